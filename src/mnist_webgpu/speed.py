"""tinygrad's speed settings for the train stage.

tinygrad reads BEAM, CACHEDB and friends from the environment once, at import, so the
train stage (and bench/train_speed.py, which must time the same thing) sets them here
from config.toml, before tinygrad is imported; a variable the user exported wins. The
CPU matmul tiles are applied later, around each call that may build kernels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def cpu_matmul_tiles() -> Iterator[None]:
    """Give matrix products on tinygrad's CPU device 8x4 output tiles, no reduce unrolling.

    tinygrad's heuristic tiles a CPU matmul 4x4 and unrolls its reduction by 4; clang then
    turns it into scalar code at 12-22 GFLOP/s on this machine. An 8x4 tile without the
    unroll vectorizes: 128x784 @ 784x512 went from 4.7 to 3.7 ms (forward), 5.6 to 3.7 ms
    (input gradient) and 8.8 to 4.3 ms (weight gradient). Any other kernel, or one the tile
    does not divide, keeps tinygrad's choice. Compile in this process (PARALLEL=0): tinygrad's
    worker processes would not see the change. Import tinygrad only after the device is set.
    """
    from tinygrad import Context
    from tinygrad.codegen.opt import KernelOptError, Opt, OptOps, heuristic
    from tinygrad.uop.ops import Ops

    tinygrads = heuristic.hand_coded_optimizations

    def tiled(k):
        r = k.reduceop
        product_sum = r is not None and r.arg[0] is Ops.ADD and r.src[0].op is Ops.MUL
        if k.ren.target.device == "CPU" and product_sum and len(k.upcastable_dims) == 2:
            rows, columns = k.upcastable_dims
            try:
                t = k.copy()
                t.apply_opt(Opt(OptOps.UPCAST, columns, 8))
                t.apply_opt(Opt(OptOps.UPCAST, rows, 4))
                return t
            except KernelOptError:
                pass
        return tinygrads(k)

    heuristic.hand_coded_optimizations = tiled
    try:
        with Context(PARALLEL=0):
            yield
    finally:
        heuristic.hand_coded_optimizations = tinygrads
