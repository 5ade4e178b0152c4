"""tinygrad's speed settings for the train stage, applied before tinygrad is imported.

tinygrad reads BEAM, CACHEDB and friends from the environment once, at import, so the
train stage (and bench/train_speed.py, which must time the same thing) sets them here
from config.toml; a variable the user exported wins.
"""

from __future__ import annotations

import os
from pathlib import Path

from .config import Config


def kernel_cache(cfg: Config) -> Path:
    """tinygrad's compile and BEAM-search cache, inside the project's cache: only the first build pays."""
    return cfg.cache_dir() / "tinygrad" / "cache.db"


def tinygrad_env(cfg: Config) -> dict[str, str]:
    env = {"CACHEDB": str(kernel_cache(cfg))}
    if cfg.train.beam:
        env["BEAM"] = str(cfg.train.beam)
    return env


def apply_tinygrad_env(cfg: Config) -> dict[str, str]:
    """Set the variables not already set; return what tinygrad will see."""
    if cfg.train.device:
        # tinygrad reads its device once, at import; Device.DEFAULT cannot be set later
        os.environ["DEV"] = cfg.train.device
    for key, value in tinygrad_env(cfg).items():
        os.environ.setdefault(key, value)
    kernel_cache(cfg).parent.mkdir(parents=True, exist_ok=True)
    return {k: os.environ[k] for k in ("DEV", "BEAM", "CACHEDB") if k in os.environ}


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
