"""The app's keys, model choice, loading and failure states and what screen readers hear, in
headless Chromium against a local server that can be slowed and made to fail (tests/kits/appkit.py).

Like tests/browser/test_app.py, the site runs the TEST-ONLY linear runtime (tests/fixtures/fake_runtime.js).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kits import appkit
from kits.appkit import ONE, SEVEN
from kits.browser_env import CHROMIUM

# every test here drives the whole app in Chromium: the full suite, not the fast tier
pytestmark = pytest.mark.slow

playwright = pytest.importorskip("playwright.sync_api")
HTTP_FAILURE = r"status of 503"


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory, fast_config, mnist):
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    return appkit.render_site(tmp_path_factory.mktemp("states"), fast_config, mnist)


@pytest.fixture(scope="module")
def control():
    return appkit.Control()


@pytest.fixture(scope="module")
def base(site_dir, control):
    with appkit.serve(site_dir, control) as url:
        yield url


@pytest.fixture(autouse=True)
def healthy_server(control):
    """Every test starts (and leaves) the shared server answering at full speed."""
    control.delay.clear()
    control.fail.clear()
    yield
    control.delay.clear()
    control.fail.clear()


def state(s) -> str:
    return s.el("app").get_attribute("data-state")


def wait_state(s, value: str, timeout: int = 10000):
    s.page.wait_for_selector(f'[data-testid="app"][data-state="{value}"]', state="attached", timeout=timeout)


def test_shortcuts_work_after_using_the_dropdown(session):
    s = session().open().ready()
    s.draw(SEVEN)
    s.wait_prediction()
    select = s.el("model-select")
    select.focus()
    select.select_option("cnn")
    s.ready()
    s.wait_prediction()
    assert s.page.evaluate("() => document.activeElement.id") == "model-select"
    s.page.keyboard.press("e")
    assert s.el("tool-eraser").get_attribute("aria-pressed") == "true"
    s.page.keyboard.press("p")
    assert s.el("tool-pen").get_attribute("aria-pressed") == "true"
    s.page.keyboard.press("c")  # with focus in the <select>: clears, never type-to-selects
    s.wait_prediction(present=False)
    assert select.input_value() == "cnn", "C picked a model instead of clearing"
    s.page.keyboard.press("Control+z")
    s.wait_prediction()
    # drawing takes the focus off the dropdown
    select.focus()
    s.draw(ONE)
    assert s.page.evaluate("() => document.activeElement.dataset.testid") == "canvas"


def test_shortcuts_leave_text_fields_alone(session):
    s = session().open().ready()
    s.draw(SEVEN)
    s.wait_prediction()
    s.page.evaluate(
        """() => { const i = document.createElement('input'); i.id = 'typing';
                   i.setAttribute('aria-label', 'test field'); document.body.append(i); }"""
    )
    s.page.focus("#typing")
    s.page.keyboard.type("pec")
    assert s.page.input_value("#typing") == "pec"
    assert s.el("tool-pen").get_attribute("aria-pressed") == "true"
    assert s.prediction() != "", "C in a text field cleared the pad"


def test_redo_with_ctrl_shift_z_ctrl_y_and_the_button(session):
    # the test reads the preview back five times, which Chromium warns about; the app never does
    s = session().allow_console("willReadFrequently").open().ready()
    s.draw(SEVEN)
    s.wait_prediction()
    seven = s.preview()
    assert s.el("redo").is_disabled()
    s.page.keyboard.press("Control+z")
    s.wait_prediction(present=False)
    assert not s.el("redo").is_disabled()
    s.page.keyboard.press("Control+Shift+z")
    s.wait_prediction()
    # a redo repaints the whole stroke, drawing painted it segment by segment: equal up to antialiasing
    redone = s.preview()
    np.testing.assert_allclose(redone, seven, atol=0.05)
    s.page.keyboard.press("Control+z")
    s.wait_prediction(present=False)
    s.page.keyboard.press("Control+y")
    s.wait_prediction()
    np.testing.assert_array_equal(s.preview(), redone)
    s.page.keyboard.press("Control+z")
    s.wait_prediction(present=False)
    s.el("redo").click()
    s.wait_prediction()
    np.testing.assert_array_equal(s.preview(), redone)
    # a new stroke after an undo forgets what could be redone
    s.page.keyboard.press("Control+z")
    s.draw(ONE)
    s.wait_prediction()
    assert s.el("redo").is_disabled()


def test_slow_download_says_loading_then_predicts_the_ink_already_there(session, control):
    control.delay["/models/mlp/*"] = 2.0
    s = session().open()
    wait_state(s, "loading")
    assert "Loading the MLP model" in s.el("verdict").text_content()
    s.draw(SEVEN)  # drawn while the weights download
    s.page.wait_for_timeout(300)
    assert state(s) == "loading" and s.prediction() == ""
    assert "Loading the MLP model" in s.el("verdict").text_content()
    s.ready()
    s.wait_prediction()  # no new stroke: the ink on the pad is predicted once the model is here
    assert s.prediction() == "7"


def test_a_switch_clears_the_old_answer_at_once(session, control):
    control.delay["/models/cnn/*"] = 2.0
    s = session().open().ready()
    s.draw(SEVEN)
    s.wait_prediction()
    s.el("model-select").select_option("cnn")
    # the same task that handles the change empties the verdict: never the MLP's answer under "CNN"
    assert s.prediction() == ""
    assert state(s) == "loading"
    assert s.el("app").get_attribute("data-ready") == "false"
    assert "Loading the CNN model" in s.el("verdict").text_content()
    assert all(p == 0 for p in s.probs())
    s.ready()
    s.wait_prediction()
    assert s.fake_runtime()["loads"] == ["mlp", "cnn"]


def test_failed_download_offers_retry_and_retries_on_the_next_stroke(session, control):
    control.fail.add("/models/cnn/*")
    s = session().allow_console(HTTP_FAILURE).open().ready()
    s.el("model-select").select_option("cnn")
    wait_state(s, "failed")
    assert s.el("retry").is_visible()
    assert "Could not load the CNN model" in s.el("status").text_content()
    assert s.el("backend").text_content() == "unavailable"
    asked = control.seen.count("/models/cnn/manifest.json")
    s.draw(SEVEN)  # still failing: the stroke retries, fails again, the retry button stays
    for _ in range(100):
        if control.seen.count("/models/cnn/manifest.json") > asked and state(s) == "failed":
            break
        s.page.wait_for_timeout(50)
    assert control.seen.count("/models/cnn/manifest.json") == asked + 1, "the stroke did not retry"
    s.page.wait_for_selector('[data-testid="retry"]', state="visible")
    control.fail.clear()
    s.draw(ONE)  # the next stroke retries by itself, and this time it loads
    s.ready()
    s.wait_prediction()
    assert not s.el("retry").is_visible()
    assert "Could not load" not in s.el("status").text_content()
    assert s.fake_runtime()["loads"] == ["mlp", "cnn"]


def test_retry_button_loads_the_model(session, control):
    control.fail.add("/models/mlp/*")
    s = session().allow_console(HTTP_FAILURE).open()
    wait_state(s, "failed")
    assert s.el("app").get_attribute("data-ready") == "false"
    control.fail.clear()
    s.el("retry").click()
    s.ready()
    assert not s.el("retry").is_visible()
    s.draw(SEVEN)
    s.wait_prediction()


def test_model_deep_link_persistence_and_unknown_names(session, base):
    s = session().open("index.html?model=cnn").ready()
    assert s.el("model-select").input_value() == "cnn"
    assert s.fake_runtime()["loads"] == ["cnn"]
    assert not s.el("notice").is_visible()
    s.el("model-select").select_option("mlp")
    s.ready()
    assert s.page.url.endswith("index.html?model=mlp"), "the address follows the choice"
    s.open("index.html")  # same browser profile, no parameter: the last choice
    s.ready()
    assert s.el("model-select").input_value() == "mlp"
    s.el("model-select").select_option("cnn")
    s.ready()
    s.page.reload()
    s.ready()
    assert s.el("model-select").input_value() == "cnn"
    s.open("index.html?model=nope").ready()
    assert s.el("model-select").input_value() == "mlp", "an unknown name falls back to the default"
    assert "nope" in s.el("notice").text_content()
    assert s.el("notice").is_visible()
    # a model page's "Try it" opens the app with that model
    fresh = session()
    fresh.open("models/cnn.html")
    fresh.el("try-it").click()
    fresh.ready()
    assert fresh.el("model-select").input_value() == "cnn"
    assert fresh.fake_runtime()["loads"] == ["cnn"]


def test_screen_readers_hear_one_answer_per_stroke(session):
    s = session().open().ready()
    assert s.el("verdict").get_attribute("aria-live") is None, "the live digit is not a live region"
    assert s.el("announce").get_attribute("aria-live") == "polite"
    s.page.evaluate(
        """() => {
             window.__announced = [];
             const region = document.querySelector('[data-testid=announce]');
             new MutationObserver(() => window.__announced.push(region.textContent))
               .observe(region, { childList: true, characterData: true, subtree: true });
           }"""
    )
    s.draw(SEVEN, steps=30)
    s.wait_prediction()
    s.page.wait_for_timeout(200)
    assert s.fake_runtime()["predictions"] >= 3, "the verdict updated live while drawing"
    heard = s.page.evaluate("() => window.__announced")
    assert heard == [f"Looks like 7 {s.el('confidence').text_content()}"], heard
    s.draw(ONE)
    s.wait_prediction()
    s.page.wait_for_timeout(200)
    assert len(s.page.evaluate("() => window.__announced")) == 2


def test_sample_digits_work_by_keyboard_alone(session):
    s = session().open().ready()
    s.page.keyboard.press("Tab")  # skip link, then on through the page to the first sample
    for _ in range(40):
        if s.page.evaluate("() => document.activeElement.dataset.sample") == "1":
            break
        s.page.keyboard.press("Tab")
    else:
        pytest.fail("the sample buttons cannot be reached with Tab")
    s.page.keyboard.press("Enter")
    s.wait_prediction()
    assert s.prediction() == "1"
    assert s.preview().max() > 0.5
    s.el("sample-7").focus()
    s.page.keyboard.press("Enter")  # replaces the drawing, undoable like a stroke
    s.wait_prediction()
    assert s.prediction() == "7"
    s.page.keyboard.press("Control+z")
    s.wait_prediction(present=False)


def test_backend_shown_with_its_reason_switchable_and_from_the_address(session):
    s = session().open().ready()
    assert s.fake_runtime()["backends"] == ["fastest"], "the app lets the runtime pick the faster one"
    assert s.el("backend").text_content() == "CPU"
    assert s.el("backend-why").text_content() == "On the CPU: the test runtime runs on the CPU."
    s.draw(SEVEN)
    s.wait_prediction()
    assert s.el("backend-fastest").get_attribute("aria-pressed") == "true"
    s.el("backend-webgpu").click()
    assert s.el("backend-webgpu").get_attribute("aria-pressed") == "true"
    assert s.el("backend-fastest").get_attribute("aria-pressed") == "false"
    s.ready()
    s.wait_prediction()  # the ink on the pad, predicted again on the new backend
    assert s.el("backend").text_content() == "WebGPU"
    assert s.el("backend-why").text_content() == "On WebGPU: asked for."
    assert s.page.url.endswith("backend=webgpu")
    assert s.fake_runtime()["backends"] == ["fastest", "webgpu"]
    assert s.fake_runtime()["disposed"] == ["mlp"], "the model on the old backend is freed"
    s.open("index.html?backend=cpu").ready()
    assert s.el("backend-cpu").get_attribute("aria-pressed") == "true"
    assert s.fake_runtime()["backends"] == ["cpu"]
