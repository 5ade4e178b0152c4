"""Patches to tinygrad 0.14's CPU device for the training step: large matmul tiles read
through 8-wide loads, dense layers whose products can use them, and the parts of a split
kernel run on every core.

Each patch is entered around the calls that build or run kernels (`fast_cpu_kernels`),
and proves at first entry in a process, on a small product, that it took effect.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import inspect
import math
import os
import subprocess
import tempfile
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mnist_webgpu.core.patching import PatchError, enabled, swapped

PART_WORK = 128 << 10  # tinygrad's heuristic: about 128K operations per part of a split kernel
# how often each patch acted in this process: the first-entry proof reads them
acted = {"tiles": 0, "wide_loads": 0, "dense": 0, "pool": 0}


POOL_SOURCE = Path(__file__).with_suffix(".c")
POOL_MAX_ARGS = 32  # MAX_ARGS in cpu_patch.c


@functools.cache
def cpu_pool(helpers: int):
    """Compile cpu_patch.c with the C compiler tinygrad's CPU device uses; start its helper threads."""
    compiler = os.environ.get("CC", "clang")
    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp) / "cpu_pool.so"
        command = [compiler, "-O2", "-shared", "-fPIC", "-pthread", "-o", str(library), str(POOL_SOURCE)]
        try:
            subprocess.run(command, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", None) or exc
            raise PatchError(f"{POOL_SOURCE}: cannot compile with {compiler!r}: {detail}") from None
        lib = ctypes.CDLL(str(library))  # stays mapped once the file is gone
    if lib.pool_start(helpers) != 0:
        raise PatchError(f"{POOL_SOURCE}: cannot start {helpers} helper threads")
    lib.pool_run.argtypes = [ctypes.c_uint64, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    lib.pool_run.restype = None
    return lib.pool_run


@contextmanager
def parts_on_all_cores(threads: int) -> Iterator[None]:
    """Run the parts of a tinygrad CPU kernel (its THREAD opt) side by side, one per core.

    tinygrad 0.14 splits a large CPU kernel into parts but calls them one after another
    on one thread, so a training step used one core of the machine. cpu_patch.c runs them
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
        split = part_slot is not None and not self.lvp and global_size[0] > 1
        if not split or len(bufs) + len(vals) > POOL_MAX_ARGS:
            return one_by_one(self, *bufs, global_size=global_size, vals=vals, wait=wait, **kwargs)
        acted["pool"] += 1
        args = [b.va_addr for b in bufs] + [v or 0 for v in vals]  # None: the part number's place
        start = time.perf_counter()
        run(self.addr, global_size[0], part_slot, (ctypes.c_uint64 * len(args))(*args), len(args))
        return time.perf_counter() - start if wait else None

    with swapped(CPUProgram, "__call__", call):
        yield


TILES = ((16, 8), (8, 4))  # (columns, rows) of a product's output tile, the first that divides


@contextmanager
def matmul_tiles(threads: int) -> Iterator[None]:
    """Give matrix products on tinygrad's CPU device large output tiles, no reduce unrolling.

    tinygrad's heuristic tiles a CPU matmul 4x4 and unrolls its reduction by 4; clang then
    turns it into scalar code at 12-22 GFLOP/s on this machine. A 16x8 tile read through
    8-wide loads (wide_vector_loads) keeps 16 AVX registers of sums: 128x784x512 runs at
    34-37 GFLOP/s on one core in each of the forward, input-gradient and weight-gradient
    layouts, against 17-24 for 8x4 or for 16x8 with 4-wide loads. A large product is then
    split into one part per core, as tinygrad's heuristic would have done. Any other
    kernel, or one no tile divides, keeps tinygrad's choice.
    """
    from tinygrad.codegen.opt import KernelOptError, Opt, OptOps, heuristic
    from tinygrad.uop.ops import Ops

    tinygrads = heuristic.hand_coded_optimizations

    def tile(k):
        rows, columns = k.upcastable_dims
        for width, height in TILES:
            with contextlib.suppress(KernelOptError):
                t = k.copy()
                t.apply_opt(Opt(OptOps.UPCAST, columns, width))
                t.apply_opt(Opt(OptOps.UPCAST, rows, height))
                return t
        return None

    def tiled(k):
        r = k.reduceop
        product_sum = r is not None and r.arg[0] is Ops.ADD and r.src[0].op is Ops.MUL
        if k.ren.target.device != "CPU" or not product_sum or len(k.upcastable_dims) != 2:
            return tinygrads(k)
        if (t := tile(k)) is None:
            return tinygrads(k)
        acted["tiles"] += 1
        if threads > 1 and math.prod(t.full_shape) >= threads * PART_WORK:
            for axis in k.upcastable_dims:
                with contextlib.suppress(KernelOptError):
                    t.apply_opt(Opt(OptOps.THREAD, axis, threads))
                    break
        return t

    with swapped(heuristic, "hand_coded_optimizations", tiled):
        yield


FOUR_WIDE = 'lengths = [8,4,2] if buf.dtype == dtypes.half and getenv("ALLOW_HALF8") else [4,2]'


@functools.cache
def eight_wide_coalescing():
    """tinygrad's memory_coalescing, rebuilt from its own source with 8-wide groups for every dtype.

    tinygrad groups adjacent loads and stores of a float buffer in fours at most, so clang
    keeps a 16x8 tile's sums in 128-bit registers; eights let it use 256-bit AVX. Only
    that one line changes, and a tinygrad whose source lacks it stops the build here.
    """
    from tinygrad.codegen.late import coalesce

    source = inspect.getsource(coalesce.memory_coalescing)
    if FOUR_WIDE not in source:
        raise PatchError(
            f"{coalesce.__file__}: memory_coalescing changed; update train/cpu_patch.py FOUR_WIDE"
        )
    namespace = dict(vars(coalesce))
    exec(compile(source.replace(FOUR_WIDE, "lengths = [8,4,2]"), coalesce.__file__, "exec"), namespace)
    eight_wide = namespace["memory_coalescing"]

    def counted(*args, **kwargs):
        acted["wide_loads"] += 1
        return eight_wide(*args, **kwargs)

    return counted


@contextmanager
def wide_vector_loads() -> Iterator[None]:
    """Group adjacent loads and stores in eights, not fours, while kernels are built."""
    import tinygrad.codegen as codegen

    with swapped(codegen, "memory_coalescing", eight_wide_coalescing()):
        yield


@contextmanager
def dense_from_transposed_weights() -> Iterator[None]:
    """`nn.Linear` multiplies by a contiguous transposed copy of its weight: the same sums in
    the same order (bit-identical weights after training), through kernels that can use the tiles.

    A Linear weight is (out, in), so in `x @ weight.T` both operands run along the summed
    axis and no output tile reads adjacent values: the MLP's first layer ran at 14 GFLOP/s
    with scalar loads. Copying the transpose (0.4M values for 784x512) lets the 16x8 tiles read
    eight outputs in one load: that product 7.4 -> 0.7 ms, the MLP step 15 -> 7 ms.
    """
    from tinygrad import nn

    def call(self, x):
        acted["dense"] += 1
        return x.linear(self.weight.transpose().contiguous(), self.bias)

    with swapped(nn.Linear, "__call__", call):
        yield


@contextmanager
def fast_cpu_kernels() -> Iterator[None]:
    """While active, tinygrad builds and runs CPU kernels the way our training step wants them.

    Matrix products get large tiles (matmul_tiles) read through 8-wide loads
    (wide_vector_loads), dense layers laid out for those tiles (dense_from_transposed_weights);
    kernels split into parts run on every core (parts_on_all_cores).
    Compile in this process (PARALLEL=0): tinygrad's worker processes would not see the
    tiles. Nothing changes on any other device.
    """
    from tinygrad import Context, Device
    from tinygrad.helpers import NUM_CPU_THREADS

    if not enabled() or not Device.DEFAULT.startswith("CPU"):
        yield
        return
    threads = NUM_CPU_THREADS.value
    with (
        matmul_tiles(threads),
        wide_vector_loads(),
        dense_from_transposed_weights(),
        parts_on_all_cores(threads),
        Context(PARALLEL=0),
    ):
        prove(threads)
        yield


PROBE_ROWS, PROBE_DEPTH = 256, 16  # a product large enough to be tiled and split on up to 8 cores


@functools.cache
def prove(threads: int) -> None:
    """Once per process: a small product shows each patch acted, and computes the right numbers.

    A tinygrad that no longer looks these internals up where we swap them would run plain,
    slower kernels without a word; this turns that into a one-line error at the first step.
    """
    from tinygrad import Tensor, nn
    from tinygrad.codegen import to_program_cache

    to_program_cache.clear()  # a kernel built earlier in this process would skip the patched steps
    before = dict(acted)
    a = Tensor.full((PROBE_ROWS, PROBE_DEPTH), 1.0).contiguous().realize()
    b = Tensor.full((PROBE_DEPTH, PROBE_ROWS), 1.0).contiguous().realize()
    product = (a @ b).numpy()
    # a layer without nn.Linear's constructor, whose random init would shift the trainer's seed
    layer = types.SimpleNamespace(
        weight=Tensor.full((PROBE_ROWS, PROBE_DEPTH), 1.0), bias=Tensor.zeros(PROBE_ROWS)
    )
    dense_product = nn.Linear.__call__(layer, a).numpy()
    took_effect = {k: acted[k] > before[k] for k in acted}
    internals = {
        "tiles": "tinygrad.codegen.opt.heuristic.hand_coded_optimizations (as postrange finds it)",
        "wide_loads": "tinygrad.codegen.memory_coalescing (as codegen.full_rewrite_to_sink finds it)",
        "dense": "tinygrad.nn.Linear.__call__ (Linear layers went another way)",
        "pool": "tinygrad.runtime.ops_cpu.CPUProgram.__call__ (split kernels went another way)",
    }
    if threads < 2:
        del took_effect["pool"]  # nothing is split on one thread
    for patch, ok in took_effect.items():
        if not ok:
            raise PatchError(
                f"{internals[patch]}: swapping it no longer changes tinygrad's CPU kernels; "
                "update src/mnist_webgpu/train/cpu_patch.py, or set MNIST_WEBGPU_PATCHES=0"
            )
    if not (product == PROBE_DEPTH).all() or not (dense_product == PROBE_DEPTH).all():
        raise PatchError("train/cpu_patch.py: the patched CPU kernels computed a wrong matrix product")
