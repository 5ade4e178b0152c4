"""Bounded sources: hostile or broken servers, files and caches cost bounded memory and time,
end in one line, and the next source is always tried. Real servers on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import socket
import subprocess
import time
import tracemalloc
import zipfile
from pathlib import Path

import pytest
from kits.datakit import Server, data_cfg, tiny_arrays

from mnist_webgpu.data import idx
from mnist_webgpu.data import mnist as data

TRAIN_IMAGES = "train-images-idx3-ubyte"


@pytest.fixture
def tiny():
    blobs = {name: idx.encode(a) for name, a in tiny_arrays().items()}
    expected = {name: (len(b), hashlib.sha256(b).hexdigest()) for name, b in blobs.items()}
    return blobs, expected


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
