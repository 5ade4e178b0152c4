"""Failures the probe saw as tracebacks: each is one line on stderr and a non-zero exit,
through the real `python -m mnist_webgpu` entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kits.projectkit import FAST_CONFIG, ROOT

from mnist_webgpu.core import config

FAST = FAST_CONFIG.read_text()


def stage(project: Path, *args: str, cache: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env[config.CONFIG_ENV] = str(project / "config.toml")
    if cache is not None:
        env[config.CACHE_ENV] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "mnist_webgpu", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode not in (0, None), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def project(tmp_path) -> Path:
    (tmp_path / "config.toml").write_text(FAST)
    return tmp_path


def test_serve_on_a_port_out_of_range(project):
    (project / "dist").mkdir()
    (project / "dist" / "index.html").write_text("x")
    line = one_line(stage(project, "serve", "--port", "70000"))
    assert (
        line == "error: serve: --port 70000: expected a TCP port between 1 and 65535, or 0 for any free one"
    )


def test_cache_path_that_is_a_file(project, tmp_path):
    blocker = tmp_path / "cache-file"
    blocker.write_text("")
    line = one_line(stage(project, "data", cache=blocker))
    assert line.startswith(f"error: cache directory {blocker}: a file is in the way")


def test_kernel_cache_blocked_by_a_file_is_one_line(project, tmp_path, mnist_cache):
    """The train stage creates <cache>/tinygrad/ for tinygrad's kernel cache; a file there stops it."""
    cache = tmp_path / "cache"
    cache.mkdir()
    for f in mnist_cache.iterdir():
        if f.is_file():
            (cache / f.name).symlink_to(f)
    (cache / "tinygrad").write_text("in the way")
    line = one_line(stage(project, "train", "mlp", cache=cache))
    assert line == f"error: {cache / 'tinygrad'}: File exists"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([1, 2], "results.json: expected an object, got a list"),
        ({"format": 1, "rows": [{}]}, "results.json: rows[0].model: missing"),
        (
            {"format": 1, "rows": [{"model": "mlp", "val_accuracy": "high"}]},
            "results.json: rows[0].",
        ),
    ],
)
def test_a_malformed_sweep_record_is_one_line(project, content, expected):
    """The committed record (sweeps/results.json) is read by the sweep stage and the site alike."""
    path = project / "sweeps" / "results.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(content))
    assert expected in one_line(stage(project, "sweep"))
