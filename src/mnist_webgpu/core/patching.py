"""The fence around every change this project makes to tinygrad's behaviour.

Each patch lives beside the stage that needs it, as a module named `*_patch.py`; the layering
test holds every reach into tinygrad's internals to those modules and the exporter. tinygrad
is pinned (tinygrad==0.14.0) and the patches reach into its internals, so each one names what
it touches, checks at first use that it took effect, and raises a one-line PatchError naming
the internal that changed when it did not. Setting MNIST_WEBGPU_PATCHES=0 turns every one of
them off: plain tinygrad, slower, for debugging and for trying the next tinygrad.

    environment           REDUCEOP_SPLIT_THRESHOLD (read by tinygrad.schedule.rangeify)
    train/cpu_patch.py    training on the CPU device: matmul tiles (codegen.opt.heuristic.
                          hand_coded_optimizations), 8-wide loads (codegen.memory_coalescing),
                          split kernels on every core (runtime.ops_cpu.CPUProgram.__call__,
                          cpu_patch.c)
    export/wgsl_patch.py  export: reductions kept inside one invocation (codegen.opt.postrange.
                          Scheduler.apply_opt)

CACHEDB and BEAM are settings, not patches: they are set from config.toml either way.
Nothing here imports tinygrad at module level: the environment must be set first.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mnist_webgpu.core.config import Config
from mnist_webgpu.core.errors import PipelineError

SWITCH = "MNIST_WEBGPU_PATCHES"

# tinygrad splits a reduction of 32,768+ elements in two kernels. The batch gather
# `train_x[idx]` is a reduction over the training images, and split it became a 4 MB masked
# copy and a second reduce (~9 ms of a 35 ms MLP step on the CPU). From above MNIST's 60,000
# images on, longer sums still split, as they should: the first convolution's weight
# gradient sums batch x 784 rows, and split it takes 1.8 ms instead of 9.9.
SPLIT_THRESHOLD = 65536


class PatchError(PipelineError):
    """A patch did not take effect on this tinygrad; the message names the internal."""


def enabled() -> bool:
    return os.environ.get(SWITCH, "1") != "0"


def kernel_cache(cfg: Config) -> Path:
    """tinygrad's compile and BEAM-search cache, inside the project's cache: only the first build pays."""
    return cfg.cache_dir() / "tinygrad" / "cache.db"


def tinygrad_env(cfg: Config) -> dict[str, str]:
    env = {"CACHEDB": str(kernel_cache(cfg))}
    if enabled():
        env["REDUCEOP_SPLIT_THRESHOLD"] = str(SPLIT_THRESHOLD)
    if cfg.train.beam:
        env["BEAM"] = str(cfg.train.beam)
    return env


def apply_tinygrad_env(cfg: Config) -> dict[str, str]:
    """Before tinygrad is imported: set the variables not already set; return what tinygrad will see.

    tinygrad reads these, and its device, once at import; a variable the user exported wins.
    """
    if cfg.train.device:
        os.environ["DEV"] = cfg.train.device  # Device.DEFAULT cannot be set after import
    for key, value in tinygrad_env(cfg).items():
        os.environ.setdefault(key, value)
    kernel_cache(cfg).parent.mkdir(parents=True, exist_ok=True)
    return {k: os.environ[k] for k in ("DEV", "BEAM", *tinygrad_env(cfg)) if k in os.environ}


@contextmanager
def swapped(owner, name: str, value) -> Iterator[None]:
    """`owner.name` is `value` inside the block and what it was after, however the block ends."""
    if not hasattr(owner, name):
        raise PatchError(f"{getattr(owner, '__name__', owner)}.{name}: gone from this tinygrad")
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)
