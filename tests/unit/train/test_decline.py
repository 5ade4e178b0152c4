"""mnist_webgpu.train.verdict: the temperature, the threshold and the page's answers, in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from mnist_webgpu.core import records
from mnist_webgpu.train import verdict


def sampled(n: int, temperature: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits, and labels drawn from softmax(logits / temperature): a model off by that factor."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, 11))
    p = verdict.softmax(logits, temperature)
    labels = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    return logits, labels


@pytest.mark.parametrize("true_t", [0.6, 1.0, 2.5])
def test_the_fitted_temperature_is_the_one_the_labels_were_drawn_at(true_t):
    logits, labels = sampled(20000, true_t)
    assert verdict.fit_temperature(logits, labels) == pytest.approx(true_t, rel=0.08)


def test_the_threshold_declines_the_chosen_share_of_each_set_of_digits():
    logits, labels = sampled(4000, 1.0, seed=1)
    rng = np.random.default_rng(2)
    drawn = rng.normal(0, 3, (2000, 11))
    pen = rng.normal(0, 3, (1500, 11))
    pen[:, verdict.NOT_A_DIGIT] -= 4  # real pen digits look less like "not a digit"
    rule = verdict.calibrate(logits, labels, [drawn, pen])
    assert 0 < rule.threshold < 1
    # the drawn set binds: its share is declined, and the pen set, refused less, does not lend
    # it room (pooled, the same share of both would refuse ~1.7% of the drawn digits)
    assert verdict.declined(drawn, rule).mean() == pytest.approx(verdict.DIGITS_DECLINED, abs=0.001)
    assert verdict.declined(pen, rule).mean() < verdict.DIGITS_DECLINED / 4
    # whichever set comes first
    assert verdict.calibrate(logits, labels, [pen, drawn]).threshold == rule.threshold
    # a set that is empty (no pen data) is skipped
    assert verdict.calibrate(logits, labels, [drawn, pen[:0]]).threshold == rule.threshold


def test_answers_name_the_top_digit_or_decline():
    rule = records.Decline(temperature=1.0, threshold=0.5)
    logits = np.array(
        [
            [0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # a 2
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 9],  # not a digit: declined, whatever its best digit
            [0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 6],  # p(not a digit) just under 0.5: a 7
        ],
        np.float32,
    )
    assert verdict.answers(logits, rule).tolist() == [2, -1, 7]
    assert verdict.answers(logits, None).tolist() == [2, 9, 7], "without a rule, never declined"


def test_figures_count_what_the_page_would_say():
    rule = records.Decline(temperature=1.0, threshold=0.5)
    digit = lambda d: np.eye(11)[d] * 8  # noqa: E731
    drawn = np.stack([digit(1), digit(2), digit(10), digit(4)])
    got = verdict.figures(
        rule,
        (drawn, np.array([1, 2, 3, 5])),
        np.stack([digit(0), digit(10)]),
        (np.stack([digit(10), digit(3), digit(10)]), np.array(["dots", "letter", "letter"])),
    )
    assert got.digits == 4 and got.accuracy == 0.5 and got.declined == 0.25
    assert got.mnist_declined == 0.5
    assert got.nondigits == 3 and got.nondigits_declined == pytest.approx(2 / 3)
    assert got.nondigits_declined_by_kind == {"dots": 1.0, "letter": 0.5}
