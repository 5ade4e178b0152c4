"""Weight files are byte-reproducible: the same weights give the same file in any process."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest
from kits.projectkit import ROOT
from safetensors.numpy import load, save

from mnist_webgpu.export import forms

WRITE = """
import hashlib, sys
import numpy as np
sys.path.insert(0, "src")
from mnist_webgpu.export import forms
rng = np.random.default_rng(0)
w = {"b": rng.standard_normal((3, 5)).astype(np.float32), "a": rng.standard_normal(3).astype(np.float32)}
meta = {"model": "mlp", "form": "int8", "zeta": "1", "alpha": "2", "mid": "3"}
print(hashlib.sha256(forms.to_bytes(forms.encode(w, "int8"), meta)).hexdigest())
"""


def test_same_weights_same_bytes_in_every_process():
    """safetensors' writer ordered the metadata by a per-process random hash: 8 runs gave 8 digests."""
    digests = {
        subprocess.run(
            [sys.executable, "-c", WRITE], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(6)
    }
    assert len(digests) == 1, digests


def test_the_writer_matches_safetensors_and_reads_back():
    rng = np.random.default_rng(1)
    weights = {
        "layers.0.weight": rng.standard_normal((16, 784)).astype(np.float32),
        "layers.0.bias": rng.standard_normal(16).astype(np.float32),
        "layers.1.weight": rng.standard_normal((10, 16)).astype(np.float32),
    }
    for form in forms.FORMS:
        tensors = forms.encode(weights, form)
        blob = forms.to_bytes(tensors, {"model": "m"})
        # with one metadata key the library's order is fixed: the layouts are the same bytes
        assert blob == save(tensors, metadata={"model": "m"})
        back = load(blob)
        assert all(back[k].dtype == tensors[k].dtype and np.array_equal(back[k], tensors[k]) for k in tensors)
    many = {"z": "1", "a": "2", "m": "3"}
    assert forms.to_bytes(tensors, many) == forms.to_bytes(tensors, dict(reversed(many.items())))


@pytest.mark.slow
def test_two_compiles_write_identical_weight_files_and_manifests(exported):
    from kits.projectkit import run_stage

    out = exported / "build" / "webgpu" / "mlp"

    def digests() -> dict[str, str]:
        return {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir()) if p.is_file()
        }

    first = digests()
    os.utime(out)  # nothing else changes between the two
    again = run_stage(exported, "compile", "mlp")
    assert again.returncode == 0, again.stderr
    assert digests() == first
    assert {"weights.f32.safetensors", "weights.f16.safetensors", "weights.int8.safetensors"} <= set(first)
