"""The web app in headless Chromium (WebGPU flags for SwiftShader), served on 127.0.0.1.

The site is rendered from plausible artefacts (tests/kits/sitekit.py) with a TEST-ONLY linear
runtime standing in for site_src/runtime.js, so these tests exercise the UI, the
preprocessing and the app's contract with the runtime, not the compiled kernels.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from kits import sitekit
from kits.appkit import ONE, SEVEN, Session

# every test here drives the whole app in Chromium: the full suite, not the fast tier
pytestmark = pytest.mark.slow

playwright = pytest.importorskip("playwright.sync_api")
ARTIFACTS = sitekit.ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def base(served):
    return served["base"]


def check_result(s: Session):
    probs = s.probs()
    assert math.isclose(sum(probs), 1.0, abs_tol=1e-4)
    top = int(np.argmax(probs))
    assert s.prediction() == str(top)
    assert s.el("confidence").text_content().startswith(f"{probs[top] * 100:.1f}%")
    assert s.el("latency").text_content().endswith(" ms")
    assert s.el("backend").text_content() in ("CPU", "WebGPU")
    return probs


def test_loads_ready_and_empty(session):
    s = session().open().ready()
    assert s.prediction() == ""
    assert s.el("backend").text_content() == "CPU"
    assert all(p == 0 for p in s.probs())
    assert s.fake_runtime()["loads"] == ["mlp"]
    assert s.page.get_attribute('[data-testid="model-select"]', "id") == "model-select"


def test_mouse_drawing_predicts_live_and_on_stroke_end(session):
    s = session().open().ready()
    s.draw(SEVEN, steps=25)
    s.wait_prediction()
    probs = check_result(s)
    assert s.prediction() == "7", probs
    log = s.fake_runtime()
    assert log["maxInFlight"] == 1, "never two predictions in flight"
    assert log["predictions"] >= 2, "predictions run while drawing, not only at the end"


def test_touch_drawing_does_not_scroll(session):
    s = session(has_touch=True, is_mobile=True, viewport={"width": 360, "height": 740}).open().ready()
    s.canvas_box()
    scroll = s.page.evaluate("() => window.scrollY")
    s.touch_draw(ONE)
    s.wait_prediction()
    check_result(s)
    assert s.page.evaluate("() => window.scrollY") == scroll, "touch drawing scrolled the page"
    touch_action = s.page.evaluate(
        "() => getComputedStyle(document.querySelector('[data-testid=canvas]')).touchAction"
    )
    assert touch_action == "none"


def test_eraser_clear_undo_and_shortcuts(session):
    s = session().open().ready()
    s.draw([(0.3, 0.5), (0.7, 0.5)])
    s.wait_prediction()
    s.el("tool-eraser").click()
    assert s.el("tool-eraser").get_attribute("aria-pressed") == "true"
    assert s.el("tool-pen").get_attribute("aria-pressed") == "false"
    s.draw([(0.2, 0.5), (0.8, 0.5)])  # the eraser is wider than the pen: nothing is left
    s.wait_prediction(present=False)
    assert all(p == 0 for p in s.probs())
    s.page.keyboard.press("Control+z")  # undo the eraser stroke
    s.wait_prediction()
    s.page.keyboard.press("p")
    assert s.el("tool-pen").get_attribute("aria-pressed") == "true"
    s.page.keyboard.press("e")
    assert s.el("tool-eraser").get_attribute("aria-pressed") == "true"
    s.page.keyboard.press("p")
    s.el("clear").click()
    s.wait_prediction(present=False)
    assert s.prediction() == ""
    assert s.preview().max() == 0
    s.page.keyboard.press("Control+z")  # a clear can be undone too
    s.wait_prediction()
    s.page.keyboard.press("c")
    s.wait_prediction(present=False)
    # the tools are real buttons, reachable with the keyboard
    s.el("tool-eraser").focus()
    s.page.keyboard.press("Enter")
    assert s.el("tool-eraser").get_attribute("aria-pressed") == "true"


def test_switching_models_repredicts_without_reload(session):
    s = session().open().ready()
    s.page.evaluate("() => { window.__sameDocument = true; }")
    s.draw(SEVEN)
    s.wait_prediction()
    first = check_result(s)
    s.el("model-select").select_option("cnn")
    s.ready()
    s.wait_prediction()
    second = check_result(s)
    assert second != first
    s.el("model-select").select_option("mlp")
    s.ready()
    s.wait_prediction()
    assert s.probs() == first
    assert s.fake_runtime()["loads"] == ["mlp", "cnn"], "each model loads once"
    assert s.page.evaluate("() => window.__sameDocument") is True, "no page reload"


def test_drawn_stroke_looks_like_mnist(session):
    s = session().open().ready()
    s.draw(ONE)
    s.wait_prediction()
    img = s.preview()
    rows = np.nonzero(img.sum(1) > 0)[0]
    assert rows[-1] - rows[0] + 1 == 20, "long side scaled to 20 px"
    cy, cx = sitekit.center_of_mass(img)
    # whole-pixel shifts, as MNIST: a symmetric stroke sits half a pixel off, either way
    assert abs(cy - 14) <= 0.5 + 1e-9 and abs(cx - 14) <= 0.5 + 1e-9, "centered by mass"
    width = img[rows[0] + 5 : rows[-1] - 5].sum(1).mean()
    assert 1.8 <= width <= 3.2, f"stroke {width:.2f} px wide at 28x28; MNIST's are 2-3 px"
    assert len(np.unique(np.round(img, 3))) > 3, "smooth downscale: grey levels, not just black and white"


def test_served_from_a_subpath(session, served):
    s = session(base=served["sub"])
    s.page.goto(served["sub"])
    s.ready()
    s.draw(SEVEN)
    s.wait_prediction()
    check_result(s)
    s.page.click("nav a >> text=CNN")
    s.page.wait_for_load_state()
    assert s.page.url == served["sub"] + "models/cnn.html"
    bg = s.page.evaluate("() => getComputedStyle(document.querySelector('.card')).borderRadius")
    assert bg == "16px", "the stylesheet loaded under the subpath"
    assert s.page.locator("img[alt^='Test image']").count() > 0
    s.open("404.html")
    assert s.page.locator("h1").text_content() == "This page is not here"
    s.page.click("text=Back to the app")
    s.ready()


@pytest.mark.parametrize("width,height", [(390, 844), (844, 390), (768, 1024), (1280, 800)])
def test_pad_and_verdict_in_one_view(session, width, height):
    """Phone portrait and landscape, tablet, desktop, touch: draw and read the answer without scrolling."""
    viewport = {"width": width, "height": height}
    s = session(viewport=viewport, has_touch=True, is_mobile=width < 1000, device_scale_factor=2)
    s.open().ready()

    def inside(testid: str) -> dict:
        box = s.el(testid).bounding_box()
        assert box["x"] >= 0 and box["y"] >= 0, f"{testid} starts off-screen at {width}x{height}: {box}"
        assert box["x"] + box["width"] <= width and box["y"] + box["height"] <= height, (
            f"{testid} ends off-screen at {width}x{height}: {box}"
        )
        return box

    pad = inside("canvas")
    assert pad["width"] >= 240, f"a pad of {pad['width']:.0f} px is too small to draw on"
    for testid in ("verdict", "model-select", "tool-pen", "tool-eraser", "undo", "redo", "clear"):
        inside(testid)
    assert s.page.evaluate("() => document.documentElement.scrollWidth") <= width
    s.touch_draw(SEVEN)
    s.wait_prediction()
    assert s.page.evaluate("() => window.scrollY") == 0, "drawing scrolled the page"
    inside("verdict")
    inside("prediction")
    inside("confidence")
    small = s.page.evaluate(
        """() => Math.min(...Array.from(document.querySelectorAll('.prob-value, .prob-digit'),
                 (e) => parseFloat(getComputedStyle(e).fontSize)))"""
    )
    assert small >= 11, f"bar labels {small} px"


def test_screenshots(session):
    ARTIFACTS.mkdir(exist_ok=True)
    for label, viewport, scale, scheme in [
        ("desktop", {"width": 1280, "height": 800}, 1, "light"),
        ("phone", {"width": 360, "height": 740}, 2, "light"),
        ("desktop-dark", {"width": 1280, "height": 800}, 1, "dark"),
        ("phone-dark", {"width": 360, "height": 740}, 2, "dark"),
    ]:
        s = session(viewport=viewport, device_scale_factor=scale, color_scheme=scheme).open().ready()
        s.draw(SEVEN)
        s.wait_prediction()
        dpr_width = s.page.evaluate("() => document.querySelector('[data-testid=canvas]').width")
        css_width = s.canvas_box()["width"]
        assert abs(dpr_width - round(css_width * scale)) <= 1, "canvas backing store follows devicePixelRatio"
        width = s.page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{label}: page wider than the screen ({width}px)"
        s.page.evaluate("() => window.scrollTo(0, 0)")
        s.page.screenshot(path=str(ARTIFACTS / f"app-{label}.png"), full_page=True)
        s.open("models/cnn.html")
        width = s.page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= viewport["width"], f"{label} model page: wider than the screen ({width}px)"
        s.page.screenshot(path=str(ARTIFACTS / f"model-{label}.png"), full_page=True)


def test_chart_text_is_readable_on_a_phone(session):
    s = session(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).open(
        "models/cnn.html"
    )
    sizes = s.page.evaluate(
        """() => Array.from(document.querySelectorAll('svg.chart'), (svg) => {
             const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
             return Math.min(...Array.from(svg.querySelectorAll('text'),
                             (t) => parseFloat(getComputedStyle(t).fontSize) * scale));
           })"""
    )
    assert len(sizes) >= 4 and min(sizes) >= 11, f"chart text {sizes} CSS px"
    assert s.page.evaluate("() => document.documentElement.scrollWidth") <= 390
