"""cpu_pool.c: the parts of one tinygrad CPU kernel, run side by side on several threads."""

from __future__ import annotations

import ctypes
import subprocess

import numpy as np
from tinygrad import Context, Tensor
from tinygrad.codegen import to_program_cache
from tinygrad.runtime.ops_cpu import CPUProgram

from mnist_webgpu.train import cpu_patch as cpu_patches

TINYGRADS_CALL = CPUProgram.__call__

# Test kernels with tinygrad's calling convention: buffer addresses, then the part number.
KERNELS = r"""
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

static atomic_int arrived;

/* every part waits (up to 10 s) until all parts have started, then records its thread */
void meet(uint64_t *threads, uint64_t *parts, int part) {
  atomic_fetch_add(&arrived, 1);
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (atomic_load(&arrived) < (int)parts[0]) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec - start.tv_sec > 10) return;
  }
  threads[part] = (uint64_t)pthread_self();
}

void count(uint64_t *runs, int part) { runs[part] += 1; }
"""


def kernels(tmp_path):
    (tmp_path / "kernels.c").write_text(KERNELS)
    library = tmp_path / "kernels.so"
    subprocess.run(
        ["clang", "-O2", "-shared", "-fPIC", "-pthread", "-o", library, tmp_path / "kernels.c"], check=True
    )
    return ctypes.CDLL(str(library))


def address(fn) -> int:
    return ctypes.cast(fn, ctypes.c_void_p).value


def run(pool, fn, parts: int, *buffers: np.ndarray) -> None:
    args = [b.ctypes.data for b in buffers] + [0]  # the part number goes last
    pool(address(fn), parts, len(args) - 1, (ctypes.c_uint64 * len(args))(*args), len(args))


def test_the_parts_of_a_kernel_run_at_the_same_time_on_different_threads(tmp_path):
    lib, pool = kernels(tmp_path), cpu_patches.cpu_pool(1)
    threads = np.zeros(2, np.uint64)
    run(pool, lib.meet, 2, threads, np.array([2], np.uint64))
    # a part that waited in vain for the other records nothing
    assert threads.all(), "the two parts never ran at the same time"
    assert threads[0] != threads[1]


def test_every_part_runs_once_when_parts_outnumber_threads(tmp_path):
    lib, pool = kernels(tmp_path), cpu_patches.cpu_pool(2)
    for parts in (1, 2, 7, 64):
        runs = np.zeros(64, np.uint64)
        for _ in range(50):  # back to back, as a training step's kernels come
            run(pool, lib.count, parts, runs)
        assert runs[:parts].tolist() == [50] * parts
        assert not runs[parts:].any()


def test_a_split_tinygrad_kernel_gives_the_same_numbers_on_all_cores():
    a = Tensor(np.random.default_rng(0).normal(size=(256, 512)).astype(np.float32)).realize()
    b = Tensor(np.random.default_rng(1).normal(size=(512, 256)).astype(np.float32)).realize()
    expected = a.numpy() @ b.numpy()
    to_program_cache.clear()  # build the product under the settings below, not reuse an earlier one
    with Context(NUM_CPU_THREADS=2), cpu_patches.fast_cpu_kernels():
        assert CPUProgram.__call__ is not TINYGRADS_CALL
        got = (a @ b).numpy()
    assert CPUProgram.__call__ is TINYGRADS_CALL  # tinygrad's own call is back
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
