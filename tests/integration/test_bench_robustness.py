"""bench/kills.py and bench/concurrent_builds.py, run for real on a round or two so they
cannot rot: the figures quoted in the README come from their full runs."""

from __future__ import annotations

import subprocess
import sys

import pytest
from kits.projectkit import ROOT, clean_env

pytestmark = pytest.mark.slow


def bench(script: str, *args: str, cache) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        env=clean_env(cache),
        capture_output=True,
        text=True,
        timeout=1200,
    )


def test_kills_one_round_of_each_ships_the_configs_model(mnist_cache):
    result = bench("kills.py", "--rounds", "1", "--seed", "3", cache=mnist_cache)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "seed 3;" in result.stdout
    for kind, sig in (("k7", "SIGKILL"), ("k8", "SIGINT")):
        assert f"{kind}  1: {sig} at " in result.stdout
        assert (
            f"{kind} ({sig}): 1 rounds, shipped model differs from the config in 0, "
            "verify failed after the recovery build in 0, recovery build failed in 0"
        ) in result.stdout


def test_concurrent_builds_two_rounds_leave_dist_complete(mnist_cache):
    result = bench("concurrent_builds.py", "--rounds", "2", cache=mnist_cache)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "builds: " in result.stdout and "0 failed" in result.stdout
    assert "rounds whose dist/ failed a check after both builds: 0" in result.stdout
    assert " 0 partial," in result.stdout
