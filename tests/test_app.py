"""The web app in headless Chromium (WebGPU flags for SwiftShader), served on 127.0.0.1.

The site is rendered from plausible artefacts (tests/sitekit.py) with a TEST-ONLY linear
runtime standing in for site_src/runtime.js, so these tests exercise the UI, the
preprocessing and the app's contract with the runtime, not the compiled kernels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import sitekit
from browser_env import CHROMIUM, CHROMIUM_ARGS, serve

from mnist_webgpu import site

playwright = pytest.importorskip("playwright.sync_api")
ARTIFACTS = sitekit.ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def served(tmp_path_factory, fast_config, mnist):
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    tmp = tmp_path_factory.mktemp("app")
    paths = sitekit.make_inputs(tmp, fast_config, mnist)
    out = site.render(fast_config, tmp / "root" / "sub", paths)
    with serve(out) as base, serve(out.parent) as sub_root:
        yield {"base": base, "sub": sub_root + "sub/", "out": out}


@pytest.fixture(scope="module")
def browser(served):
    with playwright.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Session:
    """One page with every request and console message recorded."""

    def __init__(self, browser, base: str, **context_args):
        self.base = base
        self.context = browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **context_args})
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.console: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def _route(self, route):
        url = route.request.url
        self.requests.append(url)
        if url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def _on_console(self, msg):
        if msg.type in ("error", "warning"):
            self.console.append(f"{msg.type}: {msg.text}")

    def open(self, path: str = "index.html"):
        self.page.goto(self.base + path)
        return self

    def ready(self):
        self.page.wait_for_selector('[data-testid="app"][data-ready="true"]', timeout=20000)
        return self

    def el(self, testid: str):
        return self.page.get_by_test_id(testid)

    def canvas_box(self):
        c = self.el("canvas")
        c.scroll_into_view_if_needed()
        return c.bounding_box()

    def draw(self, points, steps: int = 8):
        box = self.canvas_box()
        xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
        m = self.page.mouse
        m.move(*xy[0])
        m.down()
        for p in xy[1:]:
            m.move(*p, steps=steps)
        m.up()

    def touch_draw(self, points, steps: int = 8):
        """Real touch input through the DevTools protocol (the context needs has_touch)."""
        box = self.canvas_box()
        cdp = self.context.new_cdp_session(self.page)
        xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
        cdp.send(
            "Input.dispatchTouchEvent",
            {"type": "touchStart", "touchPoints": [{"x": xy[0][0], "y": xy[0][1]}]},
        )
        for (x0, y0), (x1, y1) in zip(xy, xy[1:], strict=False):
            for i in range(1, steps + 1):
                t = i / steps
                point = {"x": x0 + (x1 - x0) * t, "y": y0 + (y1 - y0) * t}
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    def prediction(self) -> str:
        return self.el("prediction").text_content()

    def wait_prediction(self, present: bool = True):
        expr = "document.querySelector('[data-testid=prediction]').textContent"
        self.page.wait_for_function(f"{expr} {'!==' if present else '==='} ''", timeout=10000)
        self.page.wait_for_timeout(150)  # let a pending re-prediction settle

    def probs(self) -> list[float]:
        return [float(self.el(f"prob-{d}").get_attribute("data-value")) for d in range(10)]

    def preview(self) -> np.ndarray:
        data = self.page.evaluate(
            """() => Array.from(document.querySelector('[data-testid=preview]').getContext('2d')
                     .getImageData(0, 0, 28, 28).data)"""
        )
        return np.array(data, dtype=np.float64).reshape(28, 28, 4)[:, :, 0] / 255

    def fake_runtime(self) -> dict:
        return self.page.evaluate("() => window.__fakeRuntime")

    def check_clean(self):
        assert not self.blocked, f"requests left the site: {self.blocked}"
        assert all(u.startswith(self.base.rsplit("/", 1)[0]) for u in self.requests), self.requests
        assert not self.console, self.console

    def close(self):
        self.context.close()


@pytest.fixture
def session(browser, served):
    sessions: list[Session] = []

    def make(base: str | None = None, **context_args) -> Session:
        s = Session(browser, base or served["base"], **context_args)
        sessions.append(s)
        return s

    yield make
    try:
        for s in sessions:
            s.check_clean()
    finally:
        for s in sessions:
            s.close()


SEVEN = [(0.3, 0.2), (0.7, 0.2), (0.45, 0.85)]
ONE = [(0.5, 0.1), (0.5, 0.9)]


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
    s.page.wait_for_function(
        f"""() => document.querySelector('[data-testid=app]').dataset.ready === 'true'
             && document.querySelector('[data-testid=prob-0]').dataset.value !== '{first[0]}'""",
        timeout=10000,
    )
    second = check_result(s)
    assert second != first
    s.el("model-select").select_option("mlp")
    s.page.wait_for_function(
        f"() => document.querySelector('[data-testid=prob-0]').dataset.value === '{first[0]}'", timeout=10000
    )
    assert s.probs() == first
    assert s.fake_runtime()["loads"] == ["mlp", "cnn"], "each model loads once"
    assert s.page.evaluate("() => window.__sameDocument") is True, "no page reload"


def test_preprocessing_matches_python_reference(session, mnist):
    s = session().open().ready()
    url = s.page.evaluate(
        "() => document.querySelector('link[rel=modulepreload][href*=\"preprocess.\"]').href"
    )
    rng = np.random.default_rng(3)
    for i in rng.choice(len(mnist.test_x), 4, replace=False):
        digit = mnist.test_x[i].astype(np.float64) / 255
        big = np.kron(digit, np.ones((10, 10)))  # the digit drawn 10x larger, at the top left
        big = np.pad(big, ((5, 35), (17, 23)))  # and off-centre
        out = s.page.evaluate(
            """async ([url, ink, w, h]) => {
                 const m = await import(url);
                 const r = m.preprocess(Float32Array.from(ink), w, h);
                 return [Array.from(r.pixels), r.empty];
               }""",
            [url, big.ravel().tolist(), big.shape[1], big.shape[0]],
        )
        js = np.array(out[0]).reshape(28, 28)
        assert out[1] is False
        ref = sitekit.preprocess_reference(big)
        np.testing.assert_allclose(js, ref, atol=1e-5)
        # MNIST digits are already 20 px boxes centered by mass: the pipeline gives them back
        assert np.abs(js - digit).mean() < 0.03
        cy, cx = sitekit.center_of_mass(js)
        assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    empty = s.page.evaluate(
        "async (url) => (await import(url)).preprocess(new Float32Array(100), 10, 10).empty", url
    )
    assert empty is True


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
