"""A complete staged site that passes verify (the `good` fixture), and the one-line problem it reports."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from kits import wasmkit
from mnist_webgpu.core import config, records
from mnist_webgpu.core.layout import CPU_MODULE, Layout, SiteModel, form_file
from mnist_webgpu.publish import verify

CSP = (
    '<!doctype html><meta http-equiv="Content-Security-Policy" content="default-src \'self\'; '
    "script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'none'\">"
)


CONFIG = """
[models.mlp]
arch = "mlp"
min_test_accuracy = 0.9
"""


def safetensors_bytes(tensors: dict[str, int]) -> bytes:
    header, offset = {}, 0
    for name, size in tensors.items():
        header[name] = {"dtype": "F32", "shape": [size // 4], "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + bytes(offset)


def metrics(cfg: config.Config, name: str, test_accuracy: float) -> records.Metrics:
    """What the train stage records, with the settings the config holds."""
    settings = config.training_settings(cfg.train, cfg.model(name))
    return records.Metrics(
        model=name,
        arch="mlp",
        test_accuracy=test_accuracy,
        val_accuracy=test_accuracy,
        best_step=1,
        per_class_accuracy=[test_accuracy] * 10,
        confusion_matrix=[[0] * 10] * 10,
        curves=records.Curves(step=[1], train_loss=[1.0], val_accuracy=[test_accuracy]),
        params=4,
        weight_bytes=16,
        train_seconds=1.0,
        steps_per_second=1.0,
        steps=1,
        split=records.SplitSizes(train=55000, val=5000, test=10000),
        device="CPU",
        tinygrad_version="0.14.0",
        config=records.plain(settings),
        config_hash=config.settings_hash(settings),
        created="2026-01-01T00:00:00+00:00",
    )


def manifest(weights: bytes, trained: bytes) -> records.Manifest:
    binding = records.Binding(
        binding=1,
        buffer="weight:layers.0.weight",
        kind="weight",
        bytes=16,
        access="read",
        name="layers.0.weight",
    )
    kernel = records.Kernel(
        name="k", entry_point="k", dispatch=[1, 1, 1], workgroup_size=[1, 1, 1], bindings=[binding], source=""
    )
    form = records.Form(
        form="f32",
        file=form_file("f32"),
        bytes=len(weights),
        sha256=hashlib.sha256(weights).hexdigest(),
        validation_accuracy=0.95,
        test_accuracy=0.95,
        max_abs_weight_error=0.0,
    )
    spec = records.TensorSpec(shape=[1, 10], dtype="float32", buffer="output")
    return records.Manifest(
        format=records.MANIFEST_FORMAT,
        name="mlp",
        model=records.ModelInfo(
            arch="mlp",
            widths=[],
            normalize=records.Normalize(0.0, 1.0),
            label="MLP",
            description="layers of neurons",
            widths_mean="neurons per hidden layer",
        ),
        input=spec,
        output=spec,
        buffers=[],
        kernels=[kernel],
        weights={},
        skipped_state=[],
        forms=[form],
        default_form="f32",
        evaluation=records.Evaluation(
            validation_images=5000,
            test_images=10000,
            tolerance_points=0.05,
            source_weights_sha256=hashlib.sha256(trained).hexdigest(),
        ),
        cpu=wasmkit.cpu_record(),
    )


@pytest.fixture
def good(tmp_path):
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(CONFIG)
    cfg = config.load(cfg_path)
    build, mlp = Layout(tmp_path), SiteModel("mlp")
    site = tmp_path / "site"
    (site / "assets").mkdir(parents=True)
    (site / mlp.folder).mkdir(parents=True)
    (site / "index.html").write_text(
        CSP + '<link rel="stylesheet" href="assets/style.1.css"><link rel="icon" href="favicon.svg">'
        '<link rel="manifest" href="app.webmanifest">'
        '<script type="application/json" id="models">{"default": "mlp", "models": [{"name": "mlp", '
        f'"label": "MLP", "manifest": "{mlp.manifest}", "page": "{mlp.page}"}}]}}</script>'
        f'<script type="module" src="assets/app.1.js"></script><a href="{mlp.page}">mlp</a>'
        '<a href="https://github.com/example/repo">source</a><img src="data:image/png;base64,AA==">'
    )
    (site / "app.webmanifest").write_text(
        '{"name": "x.example", "start_url": "./index.html", "scope": "./", '
        '"icons": [{"src": "favicon.svg", "sizes": "any"}]}'
    )
    (site / "sw.js").write_text(
        'const PRECACHE = ["./", "index.html", "app.webmanifest", "assets/app.1.js", '
        f'"{mlp.manifest}", "{mlp.form("f32")}"];\n'
    )
    (site / "404.html").write_text(CSP + '<a href="./">home</a>')
    (site / ".nojekyll").write_text("")
    (site / "favicon.svg").write_text("<svg/>")
    (site / mlp.page).write_text(CSP + '<a href="../index.html#top">back</a>')
    (site / "assets" / "style.1.css").write_text("body { background: url('../favicon.svg') }")
    (site / "assets" / "app.1.js").write_text(
        'import { loadModel } from "./runtime.1.js";\n'
        f'const m = new URL("../{mlp.manifest}", import.meta.url);\n'
    )
    (site / "assets" / "runtime.1.js").write_text("export const loadModel = 1;\n")
    weights = safetensors_bytes({"layers.0.weight": 16})
    (site / mlp.form("f32")).write_bytes(weights)
    (site / mlp.file(CPU_MODULE)).write_bytes(wasmkit.MODULE)
    trained = build.train_outputs("mlp")
    trained.weights.parent.mkdir(parents=True)
    trained.weights.write_bytes(b"trained weights")
    records.write(site / mlp.manifest, manifest(weights, b"trained weights"))
    records.write(trained.metrics, metrics(cfg, "mlp", 0.95))
    return cfg, site, build


def problem(cfg, site, models) -> str:
    with pytest.raises(verify.VerifyError) as info:
        verify.verify(cfg, site, models)
    assert "\n" not in str(info.value)
    return str(info.value)
