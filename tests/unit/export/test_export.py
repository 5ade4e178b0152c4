"""The compile stage: kernels, bindings, limits, weight forms and their accuracy bookkeeping."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from doit.tools import config_changed
from kits.projectkit import FAST_CONFIG, FAST_MODELS, ROOT, run_stage
from safetensors.numpy import load, load_file

from mnist_webgpu.core import layout, records
from mnist_webgpu.drawings import preprocess
from mnist_webgpu.export import forms, wasm
from mnist_webgpu.models import zoo as models
from mnist_webgpu.pipeline import tasks


def manifest(project: Path, name: str) -> dict:
    return json.loads((project / "build" / "webgpu" / name / "manifest.json").read_text())


# --- limits, each with a model built to break it --------------------------------------------


@pytest.fixture(scope="module")
def broken_cases() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "kits" / "export_cases.py")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    "case, expected",
    [
        ("too_many_buffers", "binds 4 storage buffers, more than export.max_storage_buffers = 3"),
        ("fits", "ok 1 kernels"),
        ("half_weight", "binds weight 'fc.weight' as float16"),
        ("int64_state", "binds weight 'steps' as int64"),
        ("unused_weight", "1 of 3 state-dict tensors are bound by no kernel (spare)"),
        ("batchnorm_counter", "ok 1 kernels, skipped ['num_batches_tracked']"),
        ("copy_in_forward", "the schedule has a COPY step"),
        ("symbolic", "symbolic variables ['width']"),
        # two different kernels named r_10: renamed, so the C defines each once
        ("softmax", "C r_5_2_784,r_10,r_10_1,E_10, exports [('memory', 'memory'), ('net', 'function'), "),
        (
            "libm_sqrt",
            "kernel r_5_2_784 calls sqrtf(), which a freestanding WebAssembly module does not have",
        ),
    ],
)
def test_export_refuses_what_the_browser_cannot_run(broken_cases, case, expected):
    message = broken_cases[case]
    assert expected in message
    assert "\n" not in message
    if not message.startswith("ok"):
        assert message.startswith(f"model {case!r}: ")


def test_missing_weights_is_one_line_error(tmp_path, mnist_cache):
    text = FAST_CONFIG.read_text()
    (tmp_path / "config.toml").write_text(
        text.replace("[data]\n", f'[data]\ncache_dir = "{mnist_cache}"\n', 1)
    )
    result = run_stage(tmp_path, "compile", "mlp")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: ") and "weights.safetensors: weights not found" in lines[0]


def test_unknown_model_is_one_line_error(exported):
    result = run_stage(exported, "compile", "nosuch")
    assert result.returncode == 2  # a config mistake, as `train nosuch` is: the one "no such model" rule
    assert result.stderr.strip() == (
        f"error: {exported / 'config.toml'}: models.nosuch: no such model (known: mlp, cnn, resnet)"
    )


# --- the manifest -------------------------------------------------------------------------


def test_kernel_counts(exported):
    # fast config: MLP 784-64-10 is two matrix-vector kernels; CNN two conv+pool blocks and a head
    assert len(manifest(exported, "mlp")["kernels"]) == 2
    assert len(manifest(exported, "cnn")["kernels"]) == 6


@pytest.mark.parametrize("name", FAST_MODELS)
def test_manifest_schema_and_bindings(exported, name):
    m = manifest(exported, name)
    assert m["format"] == records.MANIFEST_FORMAT and m["name"] == name
    assert m["input"] == {"shape": [1, 1, 28, 28], "dtype": "float32", "buffer": "input"}
    assert m["output"] == {"shape": [1, 11], "dtype": "float32", "buffer": "output"}
    assert m["model"]["arch"] == name and m["model"]["normalize"] == {"mean": 0.1307, "std": 0.3081}
    buffers = {b["id"]: b for b in m["buffers"]}
    assert len(buffers) == len(m["buffers"])
    assert buffers["input"]["bytes"] == 784 * 4 and buffers["output"]["bytes"] == 44
    metrics = json.loads((exported / "build" / "models" / name / "metrics.json").read_text())
    assert m["decline"] == metrics["decline"], "the rule calibrated for these very weights"
    written = {"input"}
    for k in m["kernels"]:
        assert f"fn {k['entry_point']}(" in k["source"]
        assert "var<uniform> INFINITY" in k["source"] and "f16" not in k["source"]
        assert all(isinstance(d, int) and d >= 1 for d in k["dispatch"] + k["workgroup_size"])
        assert [b["binding"] for b in k["bindings"]] == list(range(1, len(k["bindings"]) + 1))
        assert len(k["bindings"]) <= 8
        for b in k["bindings"]:
            assert f"@binding({b['binding']})" in k["source"]
            buf = buffers[b["buffer"]]
            assert (b["kind"], b["bytes"]) == (buf["kind"], buf["bytes"]) and b["bytes"] % 4 == 0
            if b["access"] == "read" and b["kind"] in ("intermediate", "output"):
                assert b["buffer"] in written, f"{k['name']} reads {b['buffer']} before any kernel wrote it"
        written |= {b["buffer"] for b in k["bindings"] if b["access"] == "write"}
    assert "output" in written
    assert {b["kind"] for b in m["kernels"][-1]["bindings"] if b["access"] == "write"} == {"output"}
    # convolution weights reach the kernels output-channels-last; the files keep the trained layout
    for key, spec in m["weights"].items():
        assert spec.get("order") == ([1, 2, 3, 0] if len(spec["shape"]) == 4 else None), key


@pytest.mark.parametrize("name", FAST_MODELS)
def test_cpu_module_imports_nothing_and_exports_what_cpu_js_calls(exported, name):
    m = manifest(exported, name)
    cpu = m["cpu"]
    blob = (exported / "build" / "webgpu" / name / cpu["file"]).read_bytes()
    assert cpu["file"] == layout.CPU_MODULE and len(blob) == cpu["bytes"]
    assert hashlib.sha256(blob).hexdigest() == cpu["sha256"]
    imports, exports = wasm.sections(blob)
    assert imports == []
    assert sorted(exports) == [("arena", "global"), ("memory", "memory"), ("net", "function")]
    assert cpu["exports"] == list(wasm.EXPORTS) and wasm.module_problems(blob) == []
    # every buffer has its own 16-aligned place in the arena, none overlapping
    places = sorted((cpu["offsets"][b["id"]], b["bytes"], b["id"]) for b in m["buffers"])
    assert len(places) == len(cpu["offsets"])
    for (at, size, _), (following, _, _) in zip(
        places, [*places[1:], (cpu["arena_bytes"], 0, "")], strict=True
    ):
        assert at % 16 == 0 and at + size <= following
    # net() calls one function per WebGPU kernel, in dispatch order, on the same buffers
    assert len(cpu["kernels"]) == len(m["kernels"])
    assert len({k["name"] for k in cpu["kernels"]}) == len(cpu["kernels"])
    for c, k in zip(cpu["kernels"], m["kernels"], strict=True):
        assert sorted(c["buffers"]) == sorted(b["buffer"] for b in k["bindings"])


@pytest.mark.parametrize("name", FAST_MODELS)
def test_every_weight_is_bound_with_its_size(exported, name, fast_config):
    m = manifest(exported, name)
    saved = load_file(str(exported / "build" / "models" / name / "weights.safetensors"))
    bound = {b["name"]: b["bytes"] for k in m["kernels"] for b in k["bindings"] if b["kind"] == "weight"}
    # state the forward pass never reads (batch norm's step count) is skipped, nothing else
    skipped = {k for k in saved if k.endswith("num_batches_tracked")}
    assert m["skipped_state"] == sorted(skipped)
    shipped = {k: v for k, v in saved.items() if k not in skipped}
    assert bound == {k: v.nbytes for k, v in shipped.items()}
    assert {k: tuple(v["shape"]) for k, v in m["weights"].items()} == {k: v.shape for k, v in shipped.items()}


# --- weight forms --------------------------------------------------------------------------


def test_form_round_trip_error_bounds():
    rng = np.random.default_rng(0)
    w = {"fc.weight": (rng.standard_normal((32, 50)) * rng.uniform(0.01, 2, (32, 1))).astype(np.float32)}
    w["fc.weight"][3] = 0  # an all-zero row must not divide by zero
    w["fc.bias"] = rng.standard_normal(32).astype(np.float32)
    assert np.array_equal(forms.expand(forms.encode(w, "f32"))["fc.weight"], w["fc.weight"])
    half = forms.expand(forms.encode(w, "f16"))
    assert np.all(np.abs(half["fc.weight"] - w["fc.weight"]) <= np.abs(w["fc.weight"]) * 2**-11 + 1e-7)
    encoded = forms.encode(w, "int8")
    assert encoded["fc.weight"].dtype == np.int8 and encoded["fc.weight.scale"].shape == (32,)
    assert encoded["fc.bias"].dtype == np.float32 and "fc.bias.scale" not in encoded
    expanded = forms.expand(encoded)
    row_peak = np.abs(w["fc.weight"]).max(axis=1, keepdims=True)
    assert np.all(np.abs(expanded["fc.weight"] - w["fc.weight"]) <= row_peak / 254 * (1 + 1e-6))
    assert np.all(expanded["fc.weight"][3] == 0)
    assert set(expanded) == set(w)


def test_choose_default_is_smallest_within_tolerance():
    def form(name, size, val):
        return records.Form(name, f"{name}.safetensors", size, "", val, val, 0.0)

    measured = [form("f32", 400, 0.9800), form("f16", 200, 0.9796), form("int8", 100, 0.9794)]
    assert forms.choose_default(measured, 0.05) == "f16"  # int8 loses 0.06 points
    assert forms.choose_default(measured, 0.06) == "int8"
    assert forms.choose_default(measured, 0.0) == "f32"


def mlp_predict(weights: dict[str, np.ndarray], images: np.ndarray) -> np.ndarray:
    """An independent numpy forward pass of the MLP, to check the accuracies tinygrad reported."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255
    x = (x - models.MNIST_MEAN) / models.MNIST_STD
    layers = sorted({k.rsplit(".", 1)[0] for k in weights}, key=lambda k: int(k.split(".")[1]))
    for i, layer in enumerate(layers):
        x = x @ weights[f"{layer}.weight"].T.astype(np.float64) + weights[f"{layer}.bias"]
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    return x[:, :10].argmax(axis=1)  # the digit named: "not a digit" is the decline rule's


def test_forms_files_and_accuracy_bookkeeping(exported, mnist, fast_config):
    m = manifest(exported, "mlp")
    out = exported / "build" / "webgpu" / "mlp"
    saved = load_file(str(exported / "build" / "models" / "mlp" / "weights.safetensors"))
    t = fast_config.train
    # the digits as the models see them: deskewed, as the page deskews a drawing
    val_x, val_y = (
        preprocess.upright(mnist.train_x[t.train_limit - t.val_size : t.train_limit]),
        mnist.train_y[t.train_limit - t.val_size : t.train_limit],
    )
    test_x, test_y = preprocess.upright(mnist.test_x[: t.test_limit]), mnist.test_y[: t.test_limit]
    assert (
        m["evaluation"]["validation_images"] == t.val_size and m["evaluation"]["test_images"] == t.test_limit
    )
    assert [f["form"] for f in m["forms"]] == ["f32", "f16", "int8"]
    sizes = {}
    for f in m["forms"]:
        blob = (out / f["file"]).read_bytes()
        assert len(blob) == f["bytes"]
        sizes[f["form"]] = len(blob)
        expanded = forms.expand(load(blob))
        error = max(float(np.abs(expanded[k] - saved[k]).max()) for k in saved)
        assert error == pytest.approx(f["max_abs_weight_error"], abs=1e-9)
        # within one image of tinygrad's figure: float64 here vs float32 there may flip a near tie
        val = np.mean(mlp_predict(expanded, val_x) == val_y)
        test = np.mean(mlp_predict(expanded, test_x) == test_y)
        assert abs(val - f["validation_accuracy"]) <= 1 / len(val_y) + 1e-12
        assert abs(test - f["test_accuracy"]) <= 1 / len(test_y) + 1e-12
    assert sizes["int8"] < sizes["f16"] < sizes["f32"]
    assert m["forms"][0]["validation_accuracy"] > 0.8  # the briefly trained MLP really learned
    parsed = [records.parse(records.Form, f, "manifest") for f in m["forms"]]
    assert m["default_form"] == forms.choose_default(parsed, fast_config.export.tolerance_points)
    assert all(hashlib.sha256((out / f.file).read_bytes()).hexdigest() == f.sha256 for f in parsed)


def test_compile_tasks_declare_inputs_and_outputs(fast_config):
    found = {t["name"]: t for t in tasks.compile_tasks(fast_config)}
    assert set(found) == set(fast_config.model_names)
    task = found["cnn"]
    assert str(layout.PROJECT.train_outputs("cnn").weights) in task["file_dep"]
    assert any(p.endswith("t10k-images-idx3-ubyte") for p in task["file_dep"])
    assert any(p.endswith("export/webgpu.py") for p in task["file_dep"])
    assert any(p.endswith("export/wasm.py") for p in task["file_dep"])
    assert task["targets"][-1].endswith("build/webgpu/cnn/manifest.json")  # written last
    assert sorted(Path(p).name for p in task["targets"][:-1]) == [
        "cpu.wasm",
        "weights.f16.safetensors",
        "weights.f32.safetensors",
        "weights.int8.safetensors",
    ]
    assert task["actions"][0].action[-2:] == ["compile", "cnn"]


def test_compile_tasks_go_stale_on_export_settings_not_on_site_ones(fast_config):
    def settings(cfg) -> dict:
        """What doit hashes to decide whether the cnn export is current."""
        (task,) = [t for t in tasks.compile_tasks(cfg) if t["name"] == "cnn"]
        (state,) = [u for u in task["uptodate"] if isinstance(u, config_changed)]
        return state.config

    replace = dataclasses.replace
    export = replace(fast_config, export=replace(fast_config.export, tolerance_points=0.5))
    retitled = replace(fast_config, site=replace(fast_config.site, title="Another title"))
    assert settings(export) != settings(fast_config)
    assert settings(retitled) == settings(fast_config)
