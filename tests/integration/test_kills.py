"""K7 and K8: real doit processes killed at chosen points never ship a stale or mixed model.

A stage held at a named point (mnist_webgpu.core.faults) writes a marker file; the test then
kills doit's whole process group, as a terminal's Ctrl-C or a `kill -9` of the session
would. Afterwards dist/ must hold a model whose metrics, weights and manifest all match
the config, and the next `doit build` must bring the outputs back in line with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kits.projectkit import MLP_ONLY, copy_project

from mnist_webgpu.core import config

pytestmark = pytest.mark.slow

# one small model keeps each build to the training and compile of a single MLP
GOOD_LR, OTHER_LR = "lr = 0.003", "lr = 0.0005"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Project:
    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.env = {**os.environ, config.CACHE_ENV: str(cache)}
        for var in (config.CONFIG_ENV, "DEV", "MNIST_WEBGPU_PAUSE_AT"):
            self.env.pop(var, None)

    def set_lr(self, old: str, new: str) -> None:
        path = self.root / "config.toml"
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new, 1))

    def build(self) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "doit", "build"],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
        )

    def build_until(self, point: str, sig: int, timeout: float = 900) -> None:
        """Start `doit build`, wait until a stage reaches `point`, then signal doit's process group."""
        marker = self.root / f"reached-{point.replace(':', '-')}"
        marker.unlink(missing_ok=True)
        env = {**self.env, "MNIST_WEBGPU_PAUSE_AT": f"{point}={marker}"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "doit", "build"],
            cwd=self.root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            # a shell without job control starts background jobs with SIGINT ignored, and children
            # inherit that: give doit the terminal's default, as under a Ctrl-C
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            deadline = time.monotonic() + timeout
            while not marker.exists():
                assert proc.poll() is None, f"doit exited {proc.returncode} before reaching {point}"
                assert time.monotonic() < deadline, f"{point} not reached in {timeout:.0f} s"
                time.sleep(0.2)
            os.killpg(proc.pid, sig)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # nothing of the group is left once its orphans are reaped (SIGINT: the held stage exits too)
        for _ in range(100):
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
        raise AssertionError(f"processes of doit's group {proc.pid} still run after {sig!r}")

    def assert_dist_matches_config(self) -> None:
        """dist/ ships the weights its manifest names, compiled from weights trained with today's config."""
        cfg = config.load(self.root / "config.toml")
        manifest = json.loads((self.root / "dist/models/mlp/manifest.json").read_text())
        for form in manifest["forms"]:
            assert sha(self.root / "dist/models/mlp" / form["file"]) == form["sha256"], form["file"]
        weights = self.root / "build/models/mlp/weights.safetensors"
        assert manifest["evaluation"]["source_weights_sha256"] == sha(weights)
        metrics = json.loads((self.root / "build/models/mlp/metrics.json").read_text())
        wanted = config.settings_hash(config.training_settings(cfg.train, cfg.model("mlp")))
        assert metrics["config_hash"] == wanted
        assert metrics["config"]["lr"] == cfg.model("mlp").lr


@pytest.fixture
def project(tmp_path, mnist_cache) -> Project:
    p = Project(copy_project(tmp_path / "project", MLP_ONLY), mnist_cache)
    first = p.build()
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    p.assert_dist_matches_config()
    return p


def test_k7_sigkill_after_training_then_config_back_retrains(project):
    project.set_lr(GOOD_LR, OTHER_LR)
    project.build_until("train:mlp", signal.SIGKILL)
    metrics = json.loads((project.root / "build/models/mlp/metrics.json").read_text())
    assert metrics["config"]["lr"] == 0.0005  # the other model was trained and written, then doit died
    project.set_lr(OTHER_LR, GOOD_LR)
    again = project.build()
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert ".  train:mlp" in again.stdout  # doit's database said up to date; metrics.json did not
    project.assert_dist_matches_config()


def test_k8_sigint_between_weight_files_and_manifest_never_ships_a_mixed_model(project):
    shipped = sha(project.root / "dist/models/mlp/manifest.json")
    project.set_lr(GOOD_LR, OTHER_LR)
    project.build_until("compile:mlp", signal.SIGINT)
    webgpu = project.root / "build/webgpu/mlp"
    manifest = json.loads((webgpu / "manifest.json").read_text())
    mixed = [f["file"] for f in manifest["forms"] if sha(webgpu / f["file"]) != f["sha256"]]
    assert mixed, "the interrupt was meant to land between a weight file and the manifest"
    # dist/ still holds the complete earlier model, and the mixed one cannot pass verify
    assert sha(project.root / "dist/models/mlp/manifest.json") == shipped
    env = {**project.env, "PYTHONPATH": str(project.root / "src")}
    for stage in ("site", "verify"):
        result = subprocess.run(
            [sys.executable, "-m", "mnist_webgpu", stage],
            cwd=project.root,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            break
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sha(project.root / "dist/models/mlp/manifest.json") == shipped
    project.set_lr(OTHER_LR, GOOD_LR)
    again = project.build()
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    project.assert_dist_matches_config()
