from __future__ import annotations

import os
from pathlib import Path

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
