from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_webgpu import config, data

ROOT = Path(__file__).resolve().parent.parent
FAST_CONFIG = ROOT / "tests" / "fast.toml"


@pytest.fixture(scope="session")
def fast_config() -> config.Config:
    return config.load(FAST_CONFIG)


@pytest.fixture(scope="session")
def mnist_cache(fast_config) -> Path:
    """The real, verified MNIST files (fetched once through the configured sources if missing)."""
    cache = fast_config.cache_dir()
    if not data.is_complete(cache):
        data.fetch(fast_config)
    return cache


@pytest.fixture(scope="session")
def mnist(mnist_cache) -> data.Mnist:
    return data.load(mnist_cache)


@pytest.fixture
def clean_env(monkeypatch):
    for var in (config.CONFIG_ENV, config.CACHE_ENV):
        monkeypatch.delenv(var, raising=False)
    return os.environ


def write_weights(cfg: config.Config, name: str, train_steps: int, mnist: data.Mnist) -> Path:
    """build/models/<name>/weights.safetensors as the train stage writes it: random, or briefly trained."""
    from tinygrad import Context, Tensor, nn
    from tinygrad.nn.state import get_state_dict, safe_save

    from mnist_webgpu import models

    Tensor.manual_seed(0)
    model = models.build(cfg.model(name))
    if train_steps:
        opt = nn.optim.Adam(nn.state.get_parameters(model), lr=3e-3)
        rng = np.random.default_rng(0)
        cut = (cfg.train.train_limit or 60000) - cfg.train.val_size  # never train on validation
        with Context(TRAINING=1):
            for _ in range(train_steps):
                idx = rng.integers(0, cut, 64)
                x = Tensor(mnist.train_x[idx].astype(np.float32)[:, None] / 255)
                loss = model(x).sparse_categorical_crossentropy(Tensor(mnist.train_y[idx].astype(np.int32)))
                opt.zero_grad()
                loss.backward()
                opt.step()
    path = cfg.base_dir / "build" / "models" / name / "weights.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_save(get_state_dict(model), str(path))
    return path


def run_stage(project: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env[config.CONFIG_ENV] = str(project / "config.toml")
    return subprocess.run(
        [sys.executable, "-m", "mnist_webgpu", *args], cwd=project, env=env, capture_output=True, text=True
    )


@pytest.fixture(scope="session")
def exported(tmp_path_factory, mnist_cache, mnist) -> Path:
    """A project directory with both fast-config models compiled: a briefly trained MLP, a random CNN."""
    project = tmp_path_factory.mktemp("exported")
    text = FAST_CONFIG.read_text().replace("[data]\n", f'[data]\ncache_dir = "{mnist_cache}"\n', 1)
    (project / "config.toml").write_text(text)
    cfg = config.load(project / "config.toml")
    write_weights(cfg, "mlp", 300, mnist)
    write_weights(cfg, "cnn", 0, mnist)
    result = run_stage(project, "compile")
    assert result.returncode == 0, result.stderr
    return project
