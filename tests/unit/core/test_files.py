"""Atomic writes: the target holds the old or the new content, never a partial one."""

from __future__ import annotations

import os
import shutil

import pytest

from mnist_webgpu.core import files


def test_write_replaces_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "a.json"
    files.write_json(target, {"x": 1})
    files.write_json(target, {"x": 2})
    assert target.read_text() == '{\n "x": 2\n}\n'
    assert [p.name for p in target.parent.iterdir()] == ["a.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "a.txt"
    files.write_text(target, "old")
    with pytest.raises(RuntimeError), files.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-way")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_artefacts_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        files.write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644


def test_writers_that_replace_the_temporary_still_get_normal_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        with files.atomic_path(tmp_path / "b.bin") as tmp:
            tmp.unlink()
            fd = os.open(tmp, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
    finally:
        os.umask(umask)
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o644


def test_replace_dir_swaps_whole_trees_and_a_reader_never_finds_the_target_missing(tmp_path):
    import threading

    probe = tmp_path / "probe"
    (probe / "a").mkdir(parents=True)
    (probe / "b").mkdir()
    if not files._exchange(probe / "a", probe / "b"):
        pytest.skip("this system cannot swap two paths at once (renameat2 RENAME_EXCHANGE)")
    shutil.rmtree(probe)
    target = tmp_path / "dist"
    target.mkdir()
    (target / "v").write_text("0")
    missing, stop = [], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if not target.is_dir():
                missing.append(1)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for version in range(1, 200):
            staging = files.staging_dir(target)
            (staging / "v").write_text(str(version))
            files.replace_dir(staging, target)
            assert (target / "v").read_text() == str(version) and not staging.exists()
    finally:
        stop.set()
        thread.join()
    assert missing == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist"], "no staging or parked tree left"
