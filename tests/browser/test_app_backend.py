"""Which backend the app's "fastest" choice runs on, with the real runtime and compiled models in
headless Chromium, whose only WebGPU adapter is SwiftShader (a software one)."""

from __future__ import annotations

import pytest
from kits.browser_env import chromium_page, serve, stage_site
from kits.projectkit import FAST_MODELS

# every test here drives the whole app in Chromium: the full suite, not the fast tier
pytestmark = pytest.mark.slow

MODELS = FAST_MODELS


@pytest.fixture(scope="module")
def chromium(exported, mnist, tmp_path_factory):
    root = tmp_path_factory.mktemp("backend")
    stage_site(root, exported, MODELS, mnist.test_x[:8])
    with serve(root) as url, chromium_page(url) as page:
        yield page


@pytest.mark.parametrize("name", MODELS)
def test_a_software_adapter_means_the_cpu_path(chromium, name):
    r = chromium.evaluate("([m]) => harness.fastest(m, false)", [f"../models/{name}/manifest.json"])
    assert r["backend"] == r["ran"] == "cpu"
    assert "software" in r["reason"] and "swiftshader" in r["reason"], r
    assert chromium.errors == []


@pytest.mark.parametrize("name", MODELS)
def test_otherwise_a_warm_up_race_decides(chromium, name):
    r = chromium.evaluate("([m]) => harness.fastest(m, true)", [f"../models/{name}/manifest.json"])
    assert r["backend"] == r["ran"] and r["backend"] in ("cpu", "webgpu")
    assert r["reason"].startswith("faster in a warm-up here: "), r
    assert r["fallbackReason"] is None
    assert chromium.errors == []
