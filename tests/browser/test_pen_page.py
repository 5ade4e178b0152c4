"""Real people's pen digits replayed through the built page, on both backends, answer as the
Python stand-in of the page does (bench/drawn_digits.py --pen)."""

from __future__ import annotations

import json
import subprocess
import sys

import drawn_digits as dd
import pytest
from kits.projectkit import FAST_MODELS, ROOT

from mnist_webgpu.core import config

pytestmark = pytest.mark.slow
COUNT = 16


def test_validation_writers_read_alike_through_the_page_on_both_backends_and_offline(built):
    site = built.root / "dist"
    cfg = config.load(built.root / "config.toml")
    digits = dd.pen_digits(cfg, COUNT)
    assert {d.writer for d in digits} <= set(cfg.train.pen_val_writers), "validation writers only"
    offline = dd.offline_pen(site, digits, ["mlp"], ["written", "anywhere"])["mlp"]
    for backend in ("webgpu", "cpu"):
        page = dd.measure_pen(site, digits, ["mlp"], ["written", "anywhere"], query=f"?backend={backend}")
        for condition, got in page["mlp"].items():
            want = offline[condition]["predictions"]
            same = sum(a == b for a, b in zip(got["predictions"], want, strict=True))
            # one rendering each side, float rounding apart: a near tie may fall either way
            assert same >= COUNT - 1, (backend, condition, got["predictions"], want)
            assert set(got["by_writer"]) <= {str(w) for w in cfg.train.pen_val_writers}


def test_the_pen_bench_reports_each_writer_and_digit(built):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "drawn_digits.py"), "--pen", "10", "--json", "--offline"],
        cwd=built.root,
        env=built.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["split"] == "validation writers"
    for model in FAST_MODELS:
        for condition in dd.PEN_CONDITIONS:
            got = found["results"][model][condition]
            assert got["digits"] == 10 and len(got["predictions"]) == 10
            assert 0 <= got["worst_accuracy"] <= got["accuracy"] <= 1
            assert got["worst_writer"] in got["by_writer"]
