"""bench/hands.py: digits in hands unlike MNIST's, their templates and their drawings.

The fast tests use the Python stand-in of the page's preprocessing (mnist_webgpu.drawings.preprocess
render_strokes); the slow one draws them through the real page of a built project, the
`drawn_digits.py --hands` quick run CI makes.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import drawn_digits as dd
import hands
import numpy as np
import pytest
from kits.projectkit import FAST_MODELS, ROOT

from mnist_webgpu.drawings import preprocess as vector

PEN = 0.1


def seen(strokes_, pen=PEN):
    return vector.render_strokes([{"tool": "pen", "width": pen, "points": s} for s in strokes_])


def test_every_digit_has_three_styles_or_more():
    assert sorted(hands.TEMPLATES) == list(range(10))
    assert all(len(styles) >= 3 for styles in hands.TEMPLATES.values())
    assert len(hands.STYLES) >= 30


@pytest.mark.parametrize(("digit", "style"), hands.STYLES)
def test_every_template_renders_to_a_digit_sized_image(digit, style):
    template = hands.TEMPLATES[digit][style]
    xy = np.array([p for s in template for p in s])
    assert xy.min() >= -0.05 and xy.max() <= 1.05, "drawn on the unit box"
    got = seen([(np.asarray(s) * 0.8 + 0.1).tolist() for s in template])
    assert got is not None
    image, _ = got
    assert image.shape == (28, 28)
    rows, cols = np.nonzero(image > 0.5)
    # the page scales the long side to MNIST's 20 px box: a digit is about that tall
    assert 17 <= np.ptp(rows) + 1 <= 21, (digit, style, np.ptp(rows))
    assert image.sum() >= 20, "a visible amount of ink"


def test_drawings_are_the_same_for_the_same_seed_and_differ_between_seeds():
    assert hands.drawings(30, PEN, seed=3) == hands.drawings(30, PEN, seed=3)
    a, b = hands.drawings(30, PEN, seed=3), hands.drawings(30, PEN, seed=4)
    assert [(d, s) for _, d, s in a] == [(d, s) for _, d, s in b]
    assert all(sa != sb for (sa, _, _), (sb, _, _) in zip(a, b, strict=True))


def test_digits_are_balanced_and_styles_taken_in_turn():
    drawn = hands.drawings(len(hands.STYLES) * 10, PEN)
    digits = [d for _, d, _ in drawn]
    assert all(digits.count(d) == len(hands.STYLES) for d in range(10))
    seen_styles = {(d, s) for _, d, s in drawn}
    assert seen_styles == set(hands.STYLES)
    assert [s for _, d, s in drawn if d == 7][:3] == list(hands.TEMPLATES[7])


def test_drawings_stay_on_the_pad_at_30_to_90_percent_of_its_height_anywhere():
    drawn = hands.drawings(300, PEN, seed=1)
    heights, centres = [], []
    for strokes_, _, _ in drawn:
        xy = np.array([p for s in strokes_ for p in s])
        lo, hi = xy.min(0), xy.max(0)
        assert lo.min() - PEN / 2 >= 0 and hi.max() + PEN / 2 <= 1, (lo, hi)
        heights.append(hi[1] - lo[1])
        centres.append((lo + hi) / 2)
    heights, centres = np.array(heights), np.array(centres)
    assert heights.min() >= 0.3 - 1e-9 and heights.max() <= 0.9 + 1e-9
    assert heights.min() < 0.35 and heights.max() > 0.85
    assert np.ptp(centres[:, 0]) > 0.4 and np.ptp(centres[:, 1]) > 0.4, "all over the pad"


def test_a_bar_is_slanted_like_handwriting_forwards_more_than_back():
    rng = np.random.default_rng(5)
    angles = []
    for _ in range(300):
        (bar,) = hands.hand(hands.TEMPLATES[1]["bar"], rng)
        (x0, y0), (x1, y1) = bar[0], bar[-1]
        angles.append(math.degrees(math.atan2(x0 - x1, y1 - y0)))  # + : its top leans right
    angles = np.array(angles)
    assert angles.min() >= -15 - 5 and angles.max() <= 20 + 5
    assert angles.min() < -10 and angles.max() > 15
    assert (angles > 0).mean() > 0.5


def test_drawn_digits_look_more_like_their_template_than_like_other_digits():
    """After wobble, slant and placement, the page's 28x28 image of each drawing is closer to
    its own template's image than to most other digits' templates."""

    def cosine(a, b):
        return (a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum())

    shown = {
        k: seen([(np.asarray(s) * 0.8 + 0.1).tolist() for s in hands.TEMPLATES[k[0]][k[1]]])[0]
        for k in hands.STYLES
    }
    for strokes_, digit, style in hands.drawings(120, PEN, seed=2):
        image = seen(strokes_)[0]
        others = [cosine(image, shown[k]) for k in hands.STYLES if k[0] != digit]
        assert cosine(image, shown[(digit, style)]) > np.median(others), (digit, style)


def test_summary_counts_right_declined_and_each_style():
    drawn = [([], 1, "bar"), ([], 1, "bar"), ([], 7, "crossbar"), ([], 7, "crossbar")]
    got = hands.summary([1, None, 7, 1], drawn)
    assert got["accuracy"] == 0.5 and got["declined"] == 0.25 and got["drawings"] == 4
    assert got["by_style"] == {"1/bar": 0.5, "7/crossbar": 0.5}


@pytest.mark.slow
def test_quick_hands_run_through_the_built_page_matches_the_offline_stand_in(built):
    """`drawn_digits.py --hands 20` on a built project's dist/, then the same 20 offline."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "drawn_digits.py"), "--hands", "20", "--json"],
        cwd=built.root,
        env=built.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    page = json.loads(result.stdout)["results"]
    offline = dd.offline_hands(built.root / "dist", list(page), 20)
    assert list(page) == FAST_MODELS
    for model, found in page.items():
        assert set(found) == {"hands"}, "the MNIST conditions are not drawn unless named"
        got = found["hands"]
        assert got["drawings"] == 20 and len(got["predictions"]) == 20
        assert set(got["by_style"]) == {f"{d}/{s}" for _, d, s in hands.drawings(20, PEN)}
        assert got["declined"] == 0, "a digit 30-90% of the pad high is never too small"
        # the page and its Python stand-in read the same drawings alike (tiny models: allow 2)
        same = sum(a == b for a, b in zip(got["predictions"], offline[model]["predictions"], strict=True))
        assert same >= 18, (model, got["predictions"], offline[model]["predictions"])
