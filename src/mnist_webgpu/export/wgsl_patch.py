"""The export's one patch: every reduction stays inside one WebGPU invocation.

tinygrad's heuristic splits a small reduction over a workgroup and sums the partial
results in shared memory behind a barrier. On CPU implementations of WebGPU (SwiftShader,
what a browser without a usable GPU runs) each barrier is a costly context switch per
workgroup: the MLP's first layer as 512 workgroups of 16 took 8.6 ms a dispatch, as 16
of 32 barrier-free invocations 2.6 ms (whole MLP 11.8 -> 5.3 ms, same run). Refused,
the heuristic falls through to its per-invocation loops; on a GPU these kernels are
microseconds either way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mnist_webgpu.core.patching import PatchError, enabled, swapped

BARRIER = "workgroupBarrier"


@contextmanager
def per_thread_reductions() -> Iterator[None]:
    """Refuse GROUP/GROUPTOP opts while kernels compile. Compile in this process (PARALLEL=0):
    tinygrad's worker processes would not see the refusal. Nothing changes when patches are off."""
    if not enabled():
        yield
        return
    from tinygrad import Context
    from tinygrad.codegen.opt import OptOps
    from tinygrad.codegen.opt.postrange import KernelOptError, Scheduler

    allow = Scheduler.apply_opt

    def apply_opt(self, opt, append_opt=True):
        if opt.op in (OptOps.GROUP, OptOps.GROUPTOP):
            raise KernelOptError("export: reductions stay within one invocation")
        return allow(self, opt, append_opt)

    with swapped(Scheduler, "apply_opt", apply_opt), Context(PARALLEL=0):
        yield


def check_barrier_free(sources: list[str]) -> None:
    """The export's kernels show the patch took effect; plain tinygrad (patches off) may use barriers."""
    if enabled() and any(BARRIER in s for s in sources):
        raise PatchError(
            "tinygrad.codegen.opt.postrange.Scheduler.apply_opt: refusing GROUP opts no longer keeps "
            f"reductions in one invocation (an exported kernel calls {BARRIER}); "
            "update src/mnist_webgpu/export/wgsl_patch.py, or set MNIST_WEBGPU_PATCHES=0"
        )
