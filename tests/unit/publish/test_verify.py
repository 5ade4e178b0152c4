"""verify: broken sites are caught, and dist/ only ever holds a verified site."""

from __future__ import annotations

import json

from kits.verifykit import CONFIG, CSP, metrics, problem

from mnist_webgpu.core import config, records
from mnist_webgpu.publish import verify

# the policy templates/base.html sets, as every page carries it


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
    records.write(build.train_outputs("mlp").metrics, metrics(cfg, "mlp", 0.5))
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
