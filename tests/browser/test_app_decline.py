"""The built page declines what is not a digit, with its real models and runtime, on both backends.

The fast build's models (conftest's `built`) carry a "not a digit" output and the rule the
train stage calibrated. Drawings go onto the pad with pointer events; the page's answer is
compared with the Python rule (mnist_webgpu.train.verdict, on the same rendering of the strokes).
"""

from __future__ import annotations

import json
import math

import drawn_digits as dd
import numpy as np
import pytest

from mnist_webgpu.drawings import negatives, pad
from mnist_webgpu.train import verdict

pytestmark = pytest.mark.slow
MODEL = "mlp"


def answer(page, strokes_: list, width: float) -> tuple[str, str, list[float]]:
    page.get_by_test_id("clear").click()
    page.evaluate(dd.DRAW_JS, [strokes_, width])
    page.wait_for_selector("[data-settled=true]", timeout=30000)
    probs = [float(page.get_by_test_id(f"prob-{d}").get_attribute("data-value")) for d in range(10)]
    return (
        page.get_by_test_id("prediction").inner_text().strip(),
        page.locator("#verdict-label").inner_text(),
        probs,
    )


def python_answer(site, strokes_: list) -> int:
    """What the rule says of these strokes: the digit, or -1 for "not a digit"."""
    seen = dd.simulate([(strokes_, pad.APP_PEN)])
    return int(verdict.answers(dd.site_logits(site, MODEL, seen), dd.site_rule(site, MODEL))[0])


def test_a_dot_and_a_scribble_are_declined_and_a_digit_is_read_alike_on_both_backends(built, mnist):
    site = built.root / "dist"
    assert json.loads((site / "models" / MODEL / "manifest.json").read_text())["decline"]["threshold"] > 0
    rng = np.random.default_rng(0)
    # the first generated scribble the rule refuses, and the first drawn validation digit it reads
    scribble = next(s for s in (negatives.scribble(rng) for _ in range(200)) if python_answer(site, s) == -1)
    digits = mnist.train_x[-200:], mnist.train_y[-200:]
    digit, label = next(
        (strokes_, int(y))
        for image, y in zip(*digits, strict=True)
        if python_answer(site, strokes_ := pad.digit_strokes(image, pad.placement("centred", rng))) == int(y)
    )
    dot = [[[0.42, 0.6]]]
    seen = {}
    for backend in ("webgpu", "cpu"):
        with dd.app_page(site, query=f"?model={MODEL}&backend={backend}") as page:
            if backend == "cpu":  # asked for by the URL; WebGPU runs on SwiftShader here
                assert "cpu" in page.get_by_test_id("backend").inner_text().lower()
            seen[backend] = {
                name: answer(page, s, pad.APP_PEN)
                for name, s in (("dot", dot), ("scribble", scribble), ("digit", digit))
            }
    for backend, got in seen.items():
        assert got["dot"][:2] == ("?", "Draw bigger"), backend
        assert got["scribble"][:2] == ("?", "Draw one digit"), backend
        assert got["digit"][0] == str(label) and got["digit"][1] in ("Looks like", "Might be"), backend
        for name, (_, _, probs) in got.items():
            assert len(probs) == 10 and math.isclose(sum(probs), 1.0, abs_tol=1e-3), (backend, name)
    a, b = seen["webgpu"], seen["cpu"]
    assert all(a[k][:2] == b[k][:2] for k in a)
    assert all(np.allclose(a[k][2], b[k][2], atol=1e-3) for k in a), "the backends' bars agree"
