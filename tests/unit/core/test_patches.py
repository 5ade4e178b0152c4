"""The tinygrad patches: each proves it took effect, says which internal changed when it did
not, and one variable turns all of them off."""

from __future__ import annotations

import contextlib
import json

import pytest
from kits.projectkit import FAST_CONFIG, run_stage, with_drawings
from tinygrad import Context, nn
from tinygrad.codegen.opt import heuristic
from tinygrad.runtime.ops_cpu import CPUProgram

from mnist_webgpu.core import patching as patches
from mnist_webgpu.export import wgsl_patch
from mnist_webgpu.train import cpu_patch as cpu


@contextlib.contextmanager
def nothing(*args, **kwargs):
    yield


@pytest.fixture
def fresh_proof():
    cpu.prove.cache_clear()
    yield
    cpu.prove.cache_clear()


def test_the_patches_prove_themselves_on_this_tinygrad(fresh_proof):
    before = dict(cpu.acted)
    with Context(NUM_CPU_THREADS=2), cpu.fast_cpu_kernels():
        pass
    assert all(cpu.acted[k] > before[k] for k in ("tiles", "wide_loads", "dense", "pool"))


@pytest.mark.parametrize(
    "patch, internal",
    [
        ("matmul_tiles", "hand_coded_optimizations"),
        ("wide_vector_loads", "memory_coalescing"),
        ("dense_from_transposed_weights", "nn.Linear.__call__"),
        ("parts_on_all_cores", "CPUProgram.__call__"),
    ],
)
def test_a_patch_that_no_longer_takes_effect_stops_with_the_internal_named(
    fresh_proof, monkeypatch, patch, internal
):
    """As if tinygrad stopped looking the swapped attribute up: the patch runs but changes nothing."""
    monkeypatch.setattr(cpu, patch, nothing)
    with (
        pytest.raises(patches.PatchError, match=internal) as info,
        Context(NUM_CPU_THREADS=2),
        cpu.fast_cpu_kernels(),
    ):
        pass
    assert "\n" not in str(info.value) and "MNIST_WEBGPU_PATCHES=0" in str(info.value)


def test_an_exported_kernel_with_a_barrier_means_the_export_patch_failed(monkeypatch):
    with pytest.raises(patches.PatchError, match="Scheduler.apply_opt"):
        wgsl_patch.check_barrier_free(["fn main() { workgroupBarrier(); }"])
    wgsl_patch.check_barrier_free(["fn main() { }"])
    monkeypatch.setenv(patches.SWITCH, "0")
    wgsl_patch.check_barrier_free(["fn main() { workgroupBarrier(); }"])  # plain tinygrad may use barriers


def test_swapping_a_vanished_internal_names_it():
    with (
        pytest.raises(patches.PatchError, match=r"CPUProgram.gone: gone from this tinygrad"),
        patches.swapped(CPUProgram, "gone", None),
    ):
        pass


def test_the_switch_turns_every_patch_off(monkeypatch, fast_config):
    monkeypatch.setenv(patches.SWITCH, "0")
    assert "REDUCEOP_SPLIT_THRESHOLD" not in patches.tinygrad_env(fast_config)
    originals = (heuristic.hand_coded_optimizations, CPUProgram.__call__, nn.Linear.__call__)
    with Context(NUM_CPU_THREADS=2), cpu.fast_cpu_kernels(), wgsl_patch.per_thread_reductions():
        assert (heuristic.hand_coded_optimizations, CPUProgram.__call__, nn.Linear.__call__) == originals
    monkeypatch.setenv(patches.SWITCH, "1")
    assert patches.tinygrad_env(fast_config)["REDUCEOP_SPLIT_THRESHOLD"] == str(patches.SPLIT_THRESHOLD)


@pytest.mark.slow
def test_plain_tinygrad_trains_the_model_too(tmp_path, mnist_cache, fast_drawings):
    """With every patch off the trainer still learns (slower): the escape hatch for a new tinygrad."""
    (tmp_path / "config.toml").write_text(FAST_CONFIG.read_text())
    with_drawings(tmp_path, fast_drawings)
    done = run_stage(tmp_path, "train", "mlp", cache=mnist_cache, extra_env={patches.SWITCH: "0"})
    assert done.returncode == 0, done.stderr
    metrics = json.loads((tmp_path / "build" / "models" / "mlp" / "metrics.json").read_text())
    assert metrics["test_accuracy"] > 0.85
