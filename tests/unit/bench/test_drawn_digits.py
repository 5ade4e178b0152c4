"""bench/drawn_digits.py without a browser: how a digit becomes pen strokes, in each condition.

The page itself is exercised by the slow quick-mode run at the end; here the pad and the
page's preprocessing are the Python stand-ins (mnist_webgpu.drawings.preprocess render_strokes).
"""

from __future__ import annotations

import math

import drawn_digits as dd
import numpy as np
import pytest

from mnist_webgpu.drawings import pad as drawings
from mnist_webgpu.drawings import pen
from mnist_webgpu.drawings import preprocess as vector

PEN = 0.1


def extent(strokes) -> tuple[np.ndarray, np.ndarray]:
    xy = np.array([p for s in strokes for p in s])
    return xy.min(0), xy.max(0)


@pytest.mark.parametrize("condition", [*dd.CONDITIONS, dd.FIDELITY])
def test_strokes_stay_inside_the_pad(mnist, condition):
    for strokes, width in dd.drawings(mnist.train_x[:30], condition, PEN):
        assert strokes and all(len(s) >= 1 for s in strokes)
        lo, hi = extent(strokes)
        assert lo.min() - width / 2 >= -1e-9 and hi.max() + width / 2 <= 1 + 1e-9, (condition, lo, hi)


def test_conditions_draw_at_their_sizes_places_and_pens(mnist):
    images = mnist.train_x[:60]
    sizes, centres, pens = {}, {}, {}
    for condition in dd.CONDITIONS:
        drawn = dd.drawings(images, condition, PEN)
        spans = [extent(s) for s, _ in drawn]
        sizes[condition] = np.array([max(hi - lo) for lo, hi in spans])
        centres[condition] = np.array([(lo + hi) / 2 for lo, hi in spans])
        pens[condition] = {w for _, w in drawn}
    assert (sizes["centred"] >= 0.5 - 1e-9).all() and (sizes["centred"] <= 0.8 + 1e-9).all()
    assert np.allclose(centres["centred"], 0.5)
    assert (sizes["small"] >= 0.15 - 1e-9).all() and (sizes["small"] <= 0.3 + 1e-9).all()
    assert np.ptp(centres["small"][:, 0]) > 0.4, "small digits land all over the pad"
    assert sizes["anywhere"].min() < 0.45 and sizes["anywhere"].max() > 0.8
    assert pens["centred"] == pens["anywhere"] == pens["small"] == {PEN}
    assert pens["pen"] == {dd.THIN_PEN, dd.THICK_PEN}


def test_anywhere_tilts_up_to_12_degrees():
    rng = np.random.default_rng(1)
    tilts = [drawings.placement("anywhere", rng, PEN)["tilt"] for _ in range(200)]
    assert max(map(abs, tilts)) <= math.radians(12) and max(tilts) > math.radians(8)
    # a vertical bar drawn tilted leans by that angle
    bar = np.zeros((28, 28), np.uint8)
    bar[4:24, 13:15] = 255
    where = {"size": 0.6, "tilt": math.radians(10), "anywhere": False, "u": np.zeros(2), "pen": PEN}
    (x0, y0), (x1, y1) = (lambda s: (s[0], s[-1]))(max(drawings.digit_strokes(bar, where), key=len))
    assert abs(math.degrees(math.atan2(abs(x1 - x0), abs(y1 - y0))) - 10) <= 3


def test_drawings_are_the_same_for_the_same_seed(mnist):
    images = mnist.train_x[:10]
    assert dd.drawings(images, "anywhere", PEN) == dd.drawings(images, "anywhere", PEN)
    assert dd.drawings(images, "anywhere", PEN, seed=1) != dd.drawings(images, "anywhere", PEN)


def overlap_with_digit(image: np.ndarray, condition: str) -> float:
    """Cosine overlap of the page's rendering of the digit drawn in `condition` with the
    digit's own ink as the models see it (deskewed)."""
    ((strokes, width),) = dd.drawings(image[None], condition, PEN)
    seen = vector.render_strokes([{"tool": "pen", "width": width, "points": s} for s in strokes])[0]
    ink = vector.upright(image[None])[0] / 255
    return float((seen * ink).sum() / np.sqrt((seen**2).sum() * (ink**2).sum()))


def test_drawn_centre_lines_read_like_the_digit(mnist):
    """The pen redraw of a digit's centre line, normalized by the page, overlaps its own ink."""
    for image in mnist.train_x[100:110]:
        overlap = overlap_with_digit(image, "centred")
        assert overlap >= 0.6, overlap


def test_fidelity_rows_reproduce_the_digits_ink(mnist):
    """The row fill, rendered as the page renders it, is the digit's own ink (as the models see
    it) far more closely than a pen's centre line is (>= 0.6 above)."""
    overlaps = [overlap_with_digit(image, dd.FIDELITY) for image in mnist.train_x[100:115]]
    # measured: 0.78 at the least, 0.96 the median
    assert min(overlaps) >= 0.7 and np.median(overlaps) >= 0.9, np.round(overlaps, 2)


def test_trace_splits_at_junctions():
    tee = {(5, c) for c in range(5, 16)} | {(r, 10) for r in range(6, 20)}
    assert len(pen.trace(pen.graph(tee))) == 3


def test_erode_disc_matches_brute_force():
    y, x = np.mgrid[0:40, 0:40]
    mask = (np.hypot(x - 20, y - 20) <= 12) | ((x > 5) & (x < 12) & (y > 2) & (y < 38))
    got = dd.erode_disc(mask, 3.5)
    want = np.zeros_like(mask)
    offsets = [(dy, dx) for dy in range(-4, 5) for dx in range(-4, 5) if dy * dy + dx * dx <= 3.5**2]
    padded = np.pad(mask, 5)
    for r in range(40):
        for c in range(40):
            want[r, c] = all(padded[r + 5 + dy, c + 5 + dx] for dy, dx in offsets)
    assert np.array_equal(got, want)


def test_failure_image_pairs_the_digit_with_what_the_model_saw():
    import zlib

    from mnist_webgpu.site import charts

    img = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    blob = charts.png_gray(dd.side_by_side(img, img, zoom=2))
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    idat = blob.index(b"IDAT")
    n = int.from_bytes(blob[idat - 4 : idat], "big")
    raw = zlib.decompress(blob[idat + 4 : idat + 4 + n])
    assert len(raw) == 56 * (1 + 2 * 58)


def test_pen_digits_are_placed_as_each_condition_says_and_stay_on_the_pad(fast_config):
    digits = dd.pen_digits(fast_config, 40)
    assert len(digits) == 40 and {d.writer for d in digits} <= set(fast_config.train.pen_val_writers)
    sizes = {}
    for condition in dd.PEN_CONDITIONS:
        drawn = dd.pen_drawings(digits, condition, PEN)
        assert [len(s) for s, _ in drawn] == [len(d.strokes) for d in digits], "every stroke, in order"
        spans = [extent(s) for s, _ in drawn]
        for lo, hi in spans:
            assert lo.min() - PEN / 2 >= -1e-9 and hi.max() + PEN / 2 <= 1 + 1e-9, condition
        sizes[condition] = np.array([max(hi - lo) for lo, hi in spans])
    assert sizes["written"].min() >= 0.45 - 1e-9 and sizes["written"].max() <= 0.8 + 1e-9
    assert sizes["small"].max() <= 0.3 + 1e-9
    assert dd.pen_drawings(digits, "anywhere", PEN) == dd.pen_drawings(digits, "anywhere", PEN)


def test_the_pen_summary_counts_each_writer_and_digit():
    from mnist_webgpu.data.pendigits import PenDigit

    digits = [PenDigit(7, 3, ()), PenDigit(7, 4, ()), PenDigit(1, 4, ()), PenDigit(1, 4, ())]
    got = dd.pen_summary([7, None, 1, 7], digits)
    assert got["accuracy"] == 0.5 and got["declined"] == 0.25
    assert got["by_writer"] == {"3": 1.0, "4": 1 / 3} and got["worst_writer"] == "4"
    assert got["by_digit"] == {"1": 0.5, "7": 0.5}
