"""The runtime in real browsers against tinygrad on the CPU, same weights, same images.

Headless Chromium (WebGPU on SwiftShader) runs both backends; Firefox ESR has no WebGPU
adapter here, so "auto" must fall back to the CPU by itself.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
from kits.browser_env import chromium_page, firefox_session, serve, stage_site
from kits.modelkit import reference_logits
from kits.projectkit import FAST_MODELS, ROOT
from safetensors.numpy import load, load_file

IMAGES = 200
MODELS = FAST_MODELS


def site_csp() -> str:
    """The Content-Security-Policy every page of the site carries."""
    html = (ROOT / "templates" / "base.html").read_text(encoding="utf-8")
    return re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', html)[1]


@pytest.fixture(scope="module")
def site(exported, mnist, tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    stage_site(root, exported, MODELS, mnist.test_x[:IMAGES])
    # the harness under the site's CSP, and under the same CSP without 'wasm-unsafe-eval'
    harness = (root / "page" / "index.html").read_text(encoding="utf-8")
    for name, csp in (("csp", site_csp()), ("csp-no-wasm", site_csp().replace(" 'wasm-unsafe-eval'", ""))):
        meta = f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        (root / "page" / f"{name}.html").write_text(harness.replace("<title>", meta + "<title>", 1))
    with serve(root) as url:
        yield url


@pytest.fixture(scope="module")
def chromium(site):
    with chromium_page(site) as page:
        yield page


def browser_logits(page, name: str, options: dict) -> dict:
    args = [f"../models/{name}/manifest.json", options, "../inputs.bin", IMAGES]
    return page.evaluate("([m, o, i, c]) => harness.logits(m, o, i, c)", args)


@pytest.mark.parametrize("backend", ["webgpu", "cpu"])
@pytest.mark.parametrize("name", MODELS)
def test_chromium_matches_tinygrad(chromium, exported, mnist, name, backend):
    result = browser_logits(chromium, name, {"backend": backend, "form": "f32"})
    assert result["backend"] == backend and result["fallbackReason"] is None
    got = np.array(result["logits"], np.float32)
    want = reference_logits(exported, name, "f32", mnist.test_x[:IMAGES])
    assert got.shape == want.shape == (IMAGES, 11)  # ten digits and "not a digit"
    assert np.abs(got - want).max() <= 1e-4
    assert np.array_equal(got.argmax(1), want.argmax(1))
    assert np.array_equal(np.array(result["burst"], np.float32), got[:16])  # queued, not interleaved
    assert np.allclose(result["probsSums"], 1, atol=1e-5)
    assert chromium.errors == []


@pytest.mark.parametrize("name", MODELS)
def test_chromium_default_form_matches_its_expanded_weights(chromium, exported, mnist, name):
    result = browser_logits(chromium, name, {"backend": "auto"})
    assert result["backend"] == "webgpu"
    want = reference_logits(exported, name, result["form"], mnist.test_x[:IMAGES])
    got = np.array(result["logits"], np.float32)
    assert np.abs(got - want).max() <= 1e-4
    assert np.array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize("adapter_gone", [False, True], ids=["device-back", "adapter-gone"])
def test_chromium_survives_a_lost_device(chromium, adapter_gone):
    """A lost GPU device comes back on the next prediction, or the CPU takes over without one."""
    result = chromium.evaluate(
        "([m, i, gone]) => harness.deviceLoss(m, i, gone)",
        ["../models/mlp/manifest.json", "../inputs.bin", adapter_gone],
    )
    assert result["reason"] == "destroyed"
    assert result["before"]["backend"] == "webgpu"
    want = np.array(result["before"]["logits"], np.float32)
    got = np.array(result["after"]["logits"], np.float32)
    assert np.abs(got - want).max() <= 1e-4
    if adapter_gone:
        assert result["after"]["backend"] == result["modelBackend"] == "cpu"
        assert "no adapter" in result["fallbackReason"]
        assert result["devicesRequested"] == 1
    else:
        assert result["after"]["backend"] == result["modelBackend"] == "webgpu"
        assert result["devicesRequested"] == 2  # a new device, not the dead one
    assert chromium.errors == []


def test_cpu_fallback_runs_under_the_sites_csp(chromium, site, exported, mnist):
    assert "'wasm-unsafe-eval'" in site_csp()
    context = chromium.context.browser.new_context()
    page = context.new_page()
    try:
        for name, allowed in (("csp", True), ("csp-no-wasm", False)):
            page.goto(site + f"page/{name}.html")
            # a function, not an expression string: polling a string needs eval, which the CSP forbids
            page.wait_for_function("() => window.harnessReady === true", timeout=30_000)
            result = page.evaluate(
                """(m) => harness.logits(m, {backend: "cpu", form: "f32"}, "../inputs.bin", 8)
                          .catch((err) => ({error: err.message}))""",
                "../models/cnn/manifest.json",
            )
            if allowed:
                assert "error" not in result, result
                want = reference_logits(exported, "cnn", "f32", mnist.test_x[:8])
                assert np.abs(np.array(result["logits"], np.float32) - want).max() <= 1e-4
            else:  # the control: this page really enforces a CSP, and the failure says what failed
                assert "cannot compile its WebAssembly SIMD kernels" in result.get("error", ""), result
    finally:
        context.close()


def test_chromium_reports_broken_weights(chromium):
    message = chromium.evaluate(
        """async () => {
            try { await harness.logits("../models/nosuch/manifest.json", {}, "../inputs.bin", 1); }
            catch (err) { return err.message; }
        }"""
    )
    assert message.endswith("models/nosuch/manifest.json: HTTP 404")


@pytest.mark.slow
def test_firefox_falls_back_to_cpu_and_predicts_the_same_digits(site, exported, mnist, tmp_path):
    if shutil.which("firefox-esr") is None:
        pytest.fail("firefox-esr is not installed (apt-get install -y firefox-esr)")
    with firefox_session(tmp_path / "profile") as client:
        client.navigate(site + "page/index.html")
        client.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const wait = () => window.harnessReady ? done(true) : setTimeout(wait, 50); wait();",
            script_timeout=30_000,
            sandbox=None,  # the page's own globals, not an Xray view of them
        )
        for name in MODELS:
            result = client.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                "harness.logits(arguments[0], {backend: 'auto', form: 'f32'}, '../inputs.bin', arguments[1])"
                ".then(done, (err) => done({error: String(err)}));",
                script_args=[f"../models/{name}/manifest.json", IMAGES],
                script_timeout=120_000,
                sandbox=None,
            )
            assert "error" not in result, result
            assert result["backend"] == "cpu"
            assert "WebGPU" in result["fallbackReason"]
            got = np.array(result["logits"], np.float32)
            want = reference_logits(exported, name, "f32", mnist.test_x[:IMAGES])
            assert np.abs(got - want).max() <= 1e-4
            assert np.array_equal(got.argmax(1), want.argmax(1))


def test_reference_weights_are_the_trained_ones(exported):
    # the f32 form must be the trained weights bit for bit, or "parity" compares the wrong thing
    saved = load_file(str(exported / "build" / "models" / "mlp" / "weights.safetensors"))
    shipped = load((exported / "build" / "webgpu" / "mlp" / "weights.f32.safetensors").read_bytes())
    assert saved.keys() == shipped.keys()
    assert all(np.array_equal(saved[k], shipped[k]) for k in saved)
