"""Atomic writes: the target holds the old or the new content, never a partial one."""

from __future__ import annotations

import os

import pytest

from mnist_webgpu import files


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
