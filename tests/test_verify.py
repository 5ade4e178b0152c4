"""verify: broken sites are caught, and dist/ only ever holds a verified site."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from mnist_webgpu import config, schemas, verify
from mnist_webgpu.layout import Layout

CONFIG = """
[models.mlp]
arch = "mlp"
min_test_accuracy = 0.9
"""


# the policy templates/base.html sets, as every page carries it
CSP = (
    '<!doctype html><meta http-equiv="Content-Security-Policy" content="default-src \'self\'; '
    "script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'\">"
)


def safetensors_bytes(tensors: dict[str, int]) -> bytes:
    header, offset = {}, 0
    for name, size in tensors.items():
        header[name] = {"dtype": "F32", "shape": [size // 4], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def metrics(cfg: config.Config, name: str, test_accuracy: float) -> schemas.Metrics:
    """What the train stage records, with the settings the config holds."""
    settings = config.training_settings(cfg.train, cfg.model(name))
    return schemas.Metrics(
        model=name,
        arch="mlp",
        test_accuracy=test_accuracy,
        val_accuracy=test_accuracy,
        best_step=1,
        per_class_accuracy=[test_accuracy] * 10,
        confusion_matrix=[[0] * 10] * 10,
        curves=schemas.Curves(step=[1], train_loss=[1.0], val_accuracy=[test_accuracy]),
        params=4,
        weight_bytes=16,
        train_seconds=1.0,
        steps_per_second=1.0,
        steps=1,
        split=schemas.SplitSizes(train=55000, val=5000, test=10000),
        device="CPU",
        tinygrad_version="0.14.0",
        config=schemas.plain(settings),
        config_hash=config.settings_hash(settings),
        created="2026-01-01T00:00:00+00:00",
    )


def manifest(weights: bytes, trained: bytes) -> schemas.Manifest:
    binding = schemas.Binding(
        binding=1,
        buffer="weight:layers.0.weight",
        kind="weight",
        bytes=16,
        access="read",
        name="layers.0.weight",
    )
    kernel = schemas.Kernel(
        name="k", entry_point="k", dispatch=[1, 1, 1], workgroup_size=[1, 1, 1], bindings=[binding], source=""
    )
    form = schemas.Form(
        form="f32",
        file="weights.f32.safetensors",
        bytes=len(weights),
        sha256=hashlib.sha256(weights).hexdigest(),
        validation_accuracy=0.95,
        test_accuracy=0.95,
        max_abs_weight_error=0.0,
    )
    spec = schemas.TensorSpec(shape=[1, 10], dtype="float32", buffer="output")
    return schemas.Manifest(
        format=1,
        name="mlp",
        model=schemas.ModelInfo(arch="mlp", widths=[], normalize=schemas.Normalize(0.0, 1.0)),
        input=spec,
        output=spec,
        buffers=[],
        kernels=[kernel],
        weights={},
        skipped_state=[],
        forms=[form],
        default_form="f32",
        evaluation=schemas.Evaluation(
            validation_images=5000,
            test_images=10000,
            tolerance_points=0.05,
            source_weights_sha256=hashlib.sha256(trained).hexdigest(),
        ),
    )


@pytest.fixture
def good(tmp_path):
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(CONFIG)
    cfg = config.load(cfg_path)
    build = Layout(tmp_path)
    site = tmp_path / "site"
    (site / "assets").mkdir(parents=True)
    (site / "models" / "mlp").mkdir(parents=True)
    (site / "index.html").write_text(
        CSP + '<link rel="stylesheet" href="assets/style.1.css"><link rel="icon" href="favicon.svg">'
        '<script type="module" src="assets/app.1.js"></script><a href="models/mlp.html">mlp</a>'
        '<a href="https://github.com/example/repo">source</a><img src="data:image/png;base64,AA==">'
    )
    (site / "404.html").write_text(CSP + '<a href="./">home</a>')
    (site / ".nojekyll").write_text("")
    (site / "favicon.svg").write_text("<svg/>")
    (site / "models" / "mlp.html").write_text(CSP + '<a href="../index.html#top">back</a>')
    (site / "assets" / "style.1.css").write_text("body { background: url('../favicon.svg') }")
    (site / "assets" / "app.1.js").write_text(
        'import { loadModel } from "./runtime.1.js";\n'
        'const m = new URL("../models/mlp/manifest.json", import.meta.url);\n'
    )
    (site / "assets" / "runtime.1.js").write_text("export const loadModel = 1;\n")
    weights = safetensors_bytes({"layers.0.weight": 16})
    (site / "models" / "mlp" / "weights.f32.safetensors").write_bytes(weights)
    trained = build.train_outputs("mlp")
    trained.weights.parent.mkdir(parents=True)
    trained.weights.write_bytes(b"trained weights")
    schemas.write(site / "models" / "mlp" / "manifest.json", manifest(weights, b"trained weights"))
    schemas.write(trained.metrics, metrics(cfg, "mlp", 0.95))
    return cfg, site, build


def problem(cfg, site, models) -> str:
    with pytest.raises(verify.VerifyError) as info:
        verify.verify(cfg, site, models)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_a_complete_site_passes(good):
    verify.verify(*good)


def test_missing_asset_is_named(good):
    cfg, site, models = good
    (site / "assets" / "runtime.1.js").unlink()
    assert "assets/app.1.js: ./runtime.1.js does not exist" in problem(*good)


def test_third_party_script_is_refused(good):
    cfg, site, models = good
    page = site / "index.html"
    page.write_text(page.read_text() + '<script src="https://cdn.example.com/x.js"></script>')
    assert "index.html: loads https://cdn.example.com/x.js from outside the site" in problem(*good)


def test_absolute_paths_are_refused(good):
    cfg, site, models = good
    (site / "404.html").write_text(CSP + '<a href="/index.html">home</a>')
    assert "404.html: absolute path /index.html breaks" in problem(*good)


def test_accuracy_gate(good):
    cfg, site, build = good
    schemas.write(build.train_outputs("mlp").metrics, metrics(cfg, "mlp", 0.5))
    assert "models.mlp.min_test_accuracy: test accuracy 0.5000 is below the gate 0.9000" in problem(*good)


def test_missing_metrics(good):
    cfg, site, build = good
    build.train_outputs("mlp").metrics.unlink()
    assert "models/mlp/metrics.json: missing" in problem(*good)


def test_a_model_trained_with_other_settings_is_stale(good, tmp_path):
    cfg, site, build = good
    other = config.load(tmp_path / "c.toml")
    (tmp_path / "c.toml").write_text(CONFIG + "lr = 0.01\n")
    changed = config.load(tmp_path / "c.toml")
    assert changed != other
    message = problem(changed, site, build)
    assert "metrics.json: trained with other settings than" in message and "a stale model" in message


def test_a_manifest_compiled_from_other_weights_is_refused(good):
    cfg, site, build = good
    build.train_outputs("mlp").weights.write_bytes(b"retrained since")
    assert "compiled from other weights than" in problem(*good)


def test_a_weight_file_from_another_build_is_refused(good):
    cfg, site, build = good
    weights = site / "models" / "mlp" / "weights.f32.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-1] ^= 1  # same size, other bytes: a file from another compile
    weights.write_bytes(bytes(blob))
    assert "its SHA-256 is not the one the manifest records" in problem(*good)


def test_weights_disagreeing_with_the_manifest(good):
    cfg, site, models = good
    weights = site / "models" / "mlp" / "weights.f32.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    message = problem(*good)
    assert "bytes, manifest says" in message and "(and 1 more)" in message


def test_weight_bound_by_a_kernel_but_absent(good):
    cfg, site, models = good
    path = site / "models" / "mlp" / "manifest.json"
    data = json.loads(path.read_text())
    data["kernels"][0]["bindings"].append(
        {
            "binding": 2,
            "buffer": "w1",
            "kind": "weight",
            "bytes": 4,
            "access": "read",
            "name": "layers.1.weight",
        }
    )
    path.write_text(json.dumps(data))
    assert "no tensor for weights layers.1.weight" in problem(*good)


def test_publish_to_dist_replaces_the_whole_directory(good, tmp_path):
    _, site, _ = good
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "stale.html").write_text("old")
    verify.publish_to_dist(site, dist)
    assert not (dist / "stale.html").exists()
    assert (dist / "index.html").read_text() == (site / "index.html").read_text()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("dist")) == ["dist"]


def test_references_to_a_missing_page(good):
    cfg, site, models = good
    (site / "models" / "mlp.html").unlink()
    assert "index.html: models/mlp.html does not exist" in problem(*good)


def test_default_form_must_exist(good):
    cfg, site, models = good
    path = site / "models" / "mlp" / "manifest.json"
    data = json.loads(path.read_text())
    data["default_form"] = "int8"
    path.write_text(json.dumps(data))
    assert "default_form 'int8' is not among the forms ['f32']" in problem(*good)
