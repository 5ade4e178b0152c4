"""verify: broken sites are caught, and dist/ only ever holds a verified site."""

from __future__ import annotations

import json
import struct

import pytest

from mnist_webgpu import config, verify

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


@pytest.fixture
def good(tmp_path):
    cfg_path = tmp_path / "c.toml"
    cfg_path.write_text(CONFIG)
    cfg = config.load(cfg_path)
    site, models = tmp_path / "site", tmp_path / "models"
    (site / "assets").mkdir(parents=True)
    (site / "models" / "mlp").mkdir(parents=True)
    (site / "index.html").write_text(
        '<!doctype html><link rel="stylesheet" href="assets/style.1.css"><link rel="icon" href="favicon.svg">'
        '<script type="module" src="assets/app.1.js"></script><a href="models/mlp.html">mlp</a>'
        '<a href="https://github.com/example/repo">source</a><img src="data:image/png;base64,AA==">'
    )
    (site / "404.html").write_text('<!doctype html><a href="./">home</a>')
    (site / ".nojekyll").write_text("")
    (site / "favicon.svg").write_text("<svg/>")
    (site / "models" / "mlp.html").write_text('<!doctype html><a href="../index.html#top">back</a>')
    (site / "assets" / "style.1.css").write_text("body { background: url('../favicon.svg') }")
    (site / "assets" / "app.1.js").write_text(
        'import { loadModel } from "./runtime.1.js";\n'
        'const m = new URL("../models/mlp/manifest.json", import.meta.url);\n'
    )
    (site / "assets" / "runtime.1.js").write_text("export const loadModel = 1;\n")
    weights = safetensors_bytes({"layers.0.weight": 16})
    (site / "models" / "mlp" / "weights.f32.safetensors").write_bytes(weights)
    manifest = {
        "forms": [{"form": "f32", "file": "weights.f32.safetensors", "bytes": len(weights)}],
        "default_form": "f32",
        "kernels": [{"bindings": [{"kind": "weight", "name": "layers.0.weight"}, {"kind": "input"}]}],
    }
    (site / "models" / "mlp" / "manifest.json").write_text(json.dumps(manifest))
    (models / "mlp").mkdir(parents=True)
    (models / "mlp" / "metrics.json").write_text(json.dumps({"test_accuracy": 0.95}))
    return cfg, site, models


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
    (site / "404.html").write_text('<a href="/index.html">home</a>')
    assert "404.html: absolute path /index.html breaks" in problem(*good)


def test_accuracy_gate(good):
    cfg, site, models = good
    (models / "mlp" / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5}))
    assert "models.mlp.min_test_accuracy: test accuracy 0.5000 is below the gate 0.9000" in problem(*good)


def test_missing_metrics(good):
    cfg, site, models = good
    (models / "mlp" / "metrics.json").unlink()
    assert "model mlp has no metrics" in problem(*good)


def test_weights_disagreeing_with_the_manifest(good):
    cfg, site, models = good
    weights = site / "models" / "mlp" / "weights.f32.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4])
    message = problem(*good)
    assert "bytes, manifest says" in message and "(and 1 more)" in message


def test_weight_bound_by_a_kernel_but_absent(good):
    cfg, site, models = good
    path = site / "models" / "mlp" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["kernels"][0]["bindings"].append({"kind": "weight", "name": "layers.1.weight"})
    path.write_text(json.dumps(manifest))
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
    manifest = json.loads(path.read_text())
    manifest["default_form"] = "int8"
    path.write_text(json.dumps(manifest))
    assert "default_form 'int8' is not among the forms ['f32']" in problem(*good)
