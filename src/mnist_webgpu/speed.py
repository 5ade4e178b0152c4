"""tinygrad's speed settings for the train stage.

tinygrad reads BEAM, CACHEDB and friends from the environment once, at import, so the
train stage (and bench/train_speed.py, which must time the same thing) sets them here
from config.toml, before tinygrad is imported; a variable the user exported wins. The
CPU kernel settings (fast_cpu_kernels) are entered later, around each call that may
build or run kernels.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .config import Config
from .errors import PipelineError

PART_WORK = 128 << 10  # tinygrad's heuristic: about 128K operations per part of a split kernel


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


POOL_SOURCE = Path(__file__).with_name("cpu_pool.c")
POOL_MAX_ARGS = 32  # MAX_ARGS in cpu_pool.c


@functools.cache
def cpu_pool(helpers: int):
    """Compile cpu_pool.c with the C compiler tinygrad's CPU device uses; start its helper threads."""
    compiler = os.environ.get("CC", "clang")
    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp) / "cpu_pool.so"
        command = [compiler, "-O2", "-shared", "-fPIC", "-pthread", "-o", str(library), str(POOL_SOURCE)]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", None) or exc
            raise PipelineError(f"{POOL_SOURCE}: cannot compile with {compiler!r}: {detail}") from None
        lib = ctypes.CDLL(str(library))  # stays mapped once the file is gone
    if lib.pool_start(helpers) != 0:
        raise PipelineError(f"{POOL_SOURCE}: cannot start {helpers} helper threads")
    lib.pool_run.argtypes = [ctypes.c_uint64, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    lib.pool_run.restype = None
    return lib.pool_run


@contextmanager
def parts_on_all_cores(threads: int) -> Iterator[None]:
    """Run the parts of a tinygrad CPU kernel (its THREAD opt) side by side, one per core.

    tinygrad 0.14 splits a large CPU kernel into parts but calls them one after another
    on one thread, so a training step used one core of the machine. cpu_pool.c runs them
    on this thread and `threads - 1` helpers. Kernels tinygrad did not split are untouched.
    """
    from tinygrad.runtime.ops_cpu import CPUProgram

    if threads < 2:
        yield
        return
    run = cpu_pool(threads - 1)
    one_by_one = CPUProgram.__call__

    def call(self, *bufs, global_size=(1, 1, 1), vals=(), wait=False, **kwargs):
        part_slot = self.runtimevars.get("core_id")
        args = [b.va_addr for b in bufs] + [v or 0 for v in vals]  # None: the part number's place
        if part_slot is None or self.lvp or global_size[0] < 2 or len(args) > POOL_MAX_ARGS:
            return one_by_one(self, *bufs, global_size=global_size, vals=vals, wait=wait, **kwargs)
        start = time.perf_counter()
        run(self.addr, global_size[0], part_slot, (ctypes.c_uint64 * len(args))(*args), len(args))
        return time.perf_counter() - start if wait else None

    CPUProgram.__call__ = call
    try:
        yield
    finally:
        CPUProgram.__call__ = one_by_one


@contextmanager
def matmul_tiles(threads: int) -> Iterator[None]:
    """Give matrix products on tinygrad's CPU device 8x4 output tiles, no reduce unrolling.

    tinygrad's heuristic tiles a CPU matmul 4x4 and unrolls its reduction by 4; clang then
    turns it into scalar code at 12-22 GFLOP/s on this machine. An 8x4 tile without the
    unroll vectorizes: 128x784 @ 784x512 went from 4.7 to 3.7 ms (forward), 5.6 to 3.7 ms
    (input gradient) and 8.8 to 4.3 ms (weight gradient). A large product is then split
    into one part per core, as tinygrad's heuristic would have done. Any other kernel, or
    one the tile does not divide, keeps tinygrad's choice.
    """
    from tinygrad.codegen.opt import KernelOptError, Opt, OptOps, heuristic
    from tinygrad.uop.ops import Ops

    tinygrads = heuristic.hand_coded_optimizations

    def tiled(k):
        r = k.reduceop
        product_sum = r is not None and r.arg[0] is Ops.ADD and r.src[0].op is Ops.MUL
        if k.ren.target.device != "CPU" or not product_sum or len(k.upcastable_dims) != 2:
            return tinygrads(k)
        rows, columns = k.upcastable_dims
        try:
            t = k.copy()
            t.apply_opt(Opt(OptOps.UPCAST, columns, 8))
            t.apply_opt(Opt(OptOps.UPCAST, rows, 4))
        except KernelOptError:
            return tinygrads(k)
        if threads > 1 and math.prod(t.full_shape) >= threads * PART_WORK:
            for axis in (rows, columns):
                with contextlib.suppress(KernelOptError):
                    t.apply_opt(Opt(OptOps.THREAD, axis, threads))
                    break
        return t

    heuristic.hand_coded_optimizations = tiled
    try:
        yield
    finally:
        heuristic.hand_coded_optimizations = tinygrads


@contextmanager
def fast_cpu_kernels() -> Iterator[None]:
    """While active, tinygrad builds and runs CPU kernels the way our training step wants them.

    Matrix products get 8x4 tiles (matmul_tiles); kernels split into parts run on every
    core (parts_on_all_cores); and no reduction is split in two: on the CPU that split
    turned the batch gather `train_x[idx]` into a 4 MB masked copy and a second reduce
    (~9 ms of a 35 ms MLP step). Compile in this process (PARALLEL=0): tinygrad's worker
    processes would not see the tiles. Nothing changes on any other device.
    """
    from tinygrad import Context, Device
    from tinygrad.helpers import NUM_CPU_THREADS

    if not Device.DEFAULT.startswith("CPU"):
        yield
        return
    threads = NUM_CPU_THREADS.value
    with matmul_tiles(threads), parts_on_all_cores(threads), Context(PARALLEL=0, SPLIT_REDUCEOP=0):
        yield
