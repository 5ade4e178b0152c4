"""The page declines a drawing too small to read: "?" and a hint, the bars still shown.

Runs the built app in Chromium with the fixtures of test_app.py (a fake runtime there).
"""

from __future__ import annotations

import math

import pytest
from kits.appkit import ONE

# every test here drives the whole app in Chromium: the full suite, not the fast tier
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base(served):
    return served["base"]


def tap(s, x: float, y: float):
    box = s.canvas_box()
    m = s.page.mouse
    m.move(box["x"] + x * box["width"], box["y"] + y * box["height"])
    m.down()
    m.up()


def test_a_tap_is_declined_with_a_hint_and_a_digit_is_read(session):  # noqa: F811
    s = session().open().ready()
    tap(s, 0.4, 0.6)
    s.page.wait_for_selector("[data-testid=app][data-declined=true]", timeout=10000)
    s.page.wait_for_selector("[data-settled=true]", timeout=10000)
    assert s.prediction() == "?"
    assert s.page.locator("#verdict-label").text_content() == "Draw bigger"
    assert math.isclose(sum(s.probs()), 1.0, abs_tol=1e-4), "the bars still show the ten probabilities"
    # a short tick, 3% of the pad: still too small
    s.el("clear").click()
    s.draw([(0.5, 0.5), (0.53, 0.5)], steps=4)
    s.page.wait_for_selector("[data-testid=app][data-declined=true][data-settled=true]", timeout=10000)
    assert s.prediction() == "?"
    # a digit-sized stroke is read as a digit again
    s.el("clear").click()
    s.draw(ONE)
    s.page.wait_for_selector("[data-testid=app][data-declined=false][data-settled=true]", timeout=10000)
    assert s.prediction().isdigit()
    assert s.page.locator("#verdict-label").text_content() in ("Looks like", "Might be")


def test_a_small_digit_is_not_declined(session):  # noqa: F811
    s = session().open().ready()
    s.draw([(0.2, 0.2), (0.2, 0.36)], steps=6)  # 16% of the pad: the bench's smallest digits
    s.page.wait_for_selector("[data-testid=app][data-declined=false][data-settled=true]", timeout=10000)
    assert s.prediction().isdigit()
