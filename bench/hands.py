"""Digits written in hands unlike MNIST's: a set this project makes itself, drawn through the
page by drawn_digits.py --hands.

MNIST's digits were written by US Census Bureau staff and US high-school students around
1990, so some ways people write digits are rare in it: a 7 with a crossbar, a 1 with a flag
and a base, a 4 open at the top, a 2 with a loop at its base, a flat-topped 3 (like a z), a
9 with a straight stem or a hooked tail, an 8 as two stacked circles or an S with a line
back up, a slashed 0. TEMPLATES holds three styles of each digit (30 in all) as pen-stroke
polylines on a unit box (x right, y down), in the order a person writes them.

Each drawing is one template redrawn by a hand: resampled along its length, wobbled
smoothly (a random walk) with a little per-point noise, each stroke a little displaced,
its ends overshooting, slanted like italic writing (a shear of -15..+20 degrees, the top
leaning right for positive), made narrower or wider, then placed anywhere on the pad at
30-90% of its height (pad fractions, [x, y] in 0..1). The same seed, the same drawings.

    python bench/drawn_digits.py --hands 300 [--site dist] [--offline] [--json]
    python bench/hands.py --grid out.png [--count 0]   # every template (or drawings), for the eye
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

MARGIN = 0.01  # the pen's outline kept this far from the pad's edges (as drawn_digits.py)
SLANT = (-15.0, 20.0)  # degrees of italic shear; people lean forward more often than back
HEIGHT = (0.3, 0.9)  # the drawing's height, a fraction of the pad's
ASPECT = (0.75, 1.25)  # the template's width times this
OVERSHOOT = 0.06  # a stroke's ends run on by up to this (template heights)
WOBBLE = 0.025  # the smooth drift's scale along a stroke (template heights)
NOISE = 0.004  # per-point tremor
SHIFT = 0.015  # how far each stroke lands from where the template puts it
STEP = 0.02  # resampling step along a stroke (template heights): a pointer's move events


def arc(cx, cy, rx, ry, a0, a1, n=None) -> list[list[float]]:
    """An elliptic arc from angle a0 to a1 (degrees; 0 right, 90 down: the screen's y)."""
    n = n or max(8, int(abs(a1 - a0) / 10))
    t = np.radians(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1).tolist()


def curve(p0, c, p1, n=12) -> list[list[float]]:
    """A quadratic Bezier from p0 to p1 pulled towards c."""
    t = np.linspace(0, 1, n)[:, None]
    p0, c, p1 = (np.asarray(v, np.float64) for v in (p0, c, p1))
    return ((1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t**2 * p1).tolist()


def _eight() -> list[list[float]]:
    t = np.linspace(math.pi + 0.5, 3 * math.pi + 0.6, 60)  # from the upper right, once round
    return np.stack([0.35 + 0.62 * np.sin(t) * np.cos(t), 0.5 + 0.5 * np.sin(t)], 1).tolist()


def _digits() -> dict[int, dict[str, list[list[list[float]]]]]:
    oval = arc(0.35, 0.5, 0.31, 0.5, 265, -105)  # from the top, anticlockwise, past its start
    loop9 = arc(0.34, 0.27, 0.28, 0.26, 10, -350)  # from the stem, anticlockwise round
    top3 = arc(0.33, 0.24, 0.27, 0.23, 205, 450)
    bowl5 = arc(0.3, 0.68, 0.31, 0.29, 240, 520)
    return {
        0: {
            "oval": [oval],
            "round": [arc(0.45, 0.48, 0.45, 0.48, 265, -100)],
            "slashed": [oval, [[0.6, 0.12], [0.1, 0.88]]],
        },
        1: {
            "bar": [[[0.35, 0.0], [0.35, 1.0]]],
            "flag": [[[0.1, 0.24], [0.4, 0.0], [0.4, 1.0]]],
            "flag_base": [[[0.1, 0.24], [0.4, 0.0], [0.4, 1.0]], [[0.12, 1.0], [0.68, 1.0]]],
        },
        2: {
            "swan": [
                arc(0.33, 0.26, 0.28, 0.26, 195, 360)
                + curve([0.61, 0.3], [0.5, 0.65], [0.03, 1.0])
                + [[0.7, 0.98]]
            ],
            "base_loop": [
                arc(0.33, 0.26, 0.28, 0.26, 195, 360)
                + curve([0.61, 0.3], [0.5, 0.62], [0.22, 0.95])
                + arc(0.16, 0.86, 0.12, 0.11, 55, 415)
                + [[0.7, 0.98]]
            ],
            "angular": [[[0.03, 0.18], [0.28, 0.0], [0.58, 0.06], [0.62, 0.28], [0.04, 1.0], [0.7, 1.0]]],
        },
        3: {
            "round": [top3 + arc(0.33, 0.73, 0.31, 0.27, 270, 510)],
            "flat_top": [[[0.04, 0.0], [0.64, 0.0], [0.24, 0.42]] + arc(0.3, 0.7, 0.33, 0.28, 260, 510)],
            "small_top": [arc(0.4, 0.18, 0.19, 0.17, 200, 450) + arc(0.36, 0.66, 0.34, 0.32, 270, 515)],
        },
        4: {
            "closed": [[[0.47, 0.0], [0.0, 0.66], [0.72, 0.66]], [[0.47, 0.0], [0.5, 1.0]]],
            "open": [[[0.08, 0.0], [0.03, 0.6], [0.72, 0.6]], [[0.52, 0.04], [0.52, 1.0]]],
            "slanted": [[[0.3, 0.0], [0.0, 0.6], [0.75, 0.6]], [[0.56, 0.18], [0.54, 1.0]]],
        },
        5: {
            "bar_after": [[[0.12, 0.0], [0.08, 0.42]] + bowl5, [[0.12, 0.0], [0.66, 0.0]]],
            "one_stroke": [[[0.66, 0.0], [0.12, 0.0], [0.08, 0.42]] + bowl5],
            "square": [
                [
                    [0.66, 0.0],
                    [0.1, 0.0],
                    [0.08, 0.42],
                    [0.52, 0.42],
                    [0.64, 0.55],
                    [0.64, 0.86],
                    [0.52, 0.98],
                    [0.0, 0.98],
                ]
            ],
        },
        6: {
            "closed": [
                curve([0.58, 0.0], [0.02, 0.12], [0.05, 0.72]) + arc(0.33, 0.72, 0.28, 0.27, 180, -185)
            ],
            "open": [curve([0.58, 0.0], [0.02, 0.12], [0.05, 0.72]) + arc(0.33, 0.72, 0.28, 0.27, 180, -125)],
            "straight": [[[0.62, 0.0], [0.1, 0.66]] + arc(0.34, 0.76, 0.26, 0.24, 205, -150)],
        },
        7: {
            "crossbar": [[[0.0, 0.02], [0.7, 0.0], [0.26, 1.0]], [[0.2, 0.52], [0.7, 0.5]]],
            "serif": [[[0.0, 0.2], [0.02, 0.0], [0.7, 0.0], [0.3, 1.0]]],
            "curved_crossbar": [
                [[0.0, 0.0], *curve([0.7, 0.0], [0.32, 0.4], [0.3, 1.0])],
                [[0.18, 0.5], [0.66, 0.5]],
            ],
        },
        8: {
            "figure_eight": [_eight()],
            "two_circles": [arc(0.35, 0.24, 0.22, 0.24, 300, -60), arc(0.35, 0.74, 0.3, 0.26, 270, -90)],
            "s_and_back": [
                arc(0.35, 0.25, 0.25, 0.24, 340, 90) + arc(0.35, 0.74, 0.3, 0.25, 270, 560) + [[0.6, 0.1]]
            ],
        },
        9: {
            "straight_stem": [loop9 + [[0.62, 1.0]]],
            "hooked_tail": [loop9 + curve([0.62, 0.3], [0.64, 1.02], [0.12, 0.92])],
            "open_loop": [arc(0.33, 0.27, 0.27, 0.25, 300, 40), [[0.62, 0.06], [0.6, 1.0]]],
        },
    }


TEMPLATES = _digits()
STYLES = [(d, s) for d in range(10) for s in TEMPLATES[d]]  # (digit, style), in a fixed order


def _resample(points: np.ndarray, step: float) -> np.ndarray:
    """Points every `step` along the polyline (its corners kept): a pointer's stream of moves."""
    if len(points) < 2:
        return points
    out = [points[:1]]
    for a, b in zip(points, points[1:], strict=False):
        n = max(1, math.ceil(float(np.hypot(*(b - a))) / step))
        out.append(a + (np.arange(1, n + 1)[:, None] / n) * (b - a))
    return np.concatenate(out)


def _overshoot(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The stroke's two ends run on a little in the direction they were going."""
    if len(points) < 2:
        return points
    ends = []
    for end, before in (
        (points[0], points[min(2, len(points) - 1)]),
        (points[-1], points[max(-3, -len(points))]),
    ):
        d = end - before
        n = float(np.hypot(*d))
        ends.append(end + d / n * rng.uniform(0, OVERSHOOT) if n > 0 else end)
    return np.concatenate([ends[0][None], points, ends[1][None]])


def hand(template: list[list[list[float]]], rng: np.random.Generator) -> list[np.ndarray]:
    """One person's rendition of a template, still in template units: wobble, slant, aspect."""
    slant = math.tan(math.radians(rng.uniform(*SLANT)))
    aspect = rng.uniform(*ASPECT)
    out = []
    for stroke in template:
        p = _resample(_overshoot(np.asarray(stroke, np.float64), rng), STEP)
        drift = np.cumsum(rng.normal(0, WOBBLE / 4, p.shape), axis=0)
        drift -= np.linspace(0, 1, len(p))[:, None] * drift[-1]  # the drift returns: a hand, not a walk
        p = p + drift + rng.normal(0, NOISE, p.shape) + rng.normal(0, SHIFT, 2)
        out.append(p)
    mid = (np.concatenate(out).min(0) + np.concatenate(out).max(0)) / 2
    return [
        np.stack([(p[:, 0] - mid[0]) * aspect + slant * (mid[1] - p[:, 1]), p[:, 1] - mid[1]], 1) for p in out
    ]


def place(paths: list[np.ndarray], rng: np.random.Generator, pen: float) -> list[list[list[float]]]:
    """Paths (centred on 0) -> pad fractions: 30-90% of the pad high, anywhere it fits with the pen."""
    xy = np.concatenate(paths)
    lo, hi = xy.min(0), xy.max(0)
    room = 1 - pen - 2 * MARGIN
    scale = min(rng.uniform(*HEIGHT) / max(float(hi[1] - lo[1]), 1e-6), room / max(float(max(hi - lo)), 1e-6))
    half = (hi - lo) * scale / 2 + pen / 2 + MARGIN
    free = np.maximum(0.5 - half, 0)
    centre = 0.5 - free + 2 * free * rng.random(2)
    shift = centre - (lo + hi) / 2 * scale
    return [(p * scale + shift).tolist() for p in paths]


def drawings(count: int, pen: float, seed: int = 0) -> list[tuple[list[list[list[float]]], int, str]]:
    """`count` (strokes, digit, style) drawings: the digits in turn, each digit's styles in turn."""
    rng = np.random.default_rng([seed, 14])
    out = []
    for i in range(count):
        digit = i % 10
        styles = list(TEMPLATES[digit])
        style = styles[(i // 10) % len(styles)]
        out.append((place(hand(TEMPLATES[digit][style], rng), rng, pen), digit, style))
    return out


def summary(predictions: list[int | None], drawn: list[tuple]) -> dict:
    """Accuracy, the share declined ("?"), and the accuracy of each digit/style."""
    labels = [d for _, d, _ in drawn]
    keys = [f"{d}/{s}" for _, d, s in drawn]
    right = [p == y for p, y in zip(predictions, labels, strict=True)]
    by_style = {k: [r for r, kk in zip(right, keys, strict=True) if kk == k] for k in dict.fromkeys(keys)}
    return {
        "drawings": len(drawn),
        "accuracy": sum(right) / len(drawn),
        "declined": sum(p is None for p in predictions) / len(drawn),
        "by_style": {k: sum(v) / len(v) for k, v in by_style.items()},
        "predictions": predictions,
    }


def grid(rows: list[list[np.ndarray]], zoom: int = 4) -> np.ndarray:
    """28x28 images in rows (white ink on black, as MNIST), 2 px apart, scaled up."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows) * 30, width * 30), 60, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            out[i * 30 + 1 : i * 30 + 29, j * 30 + 1 : j * 30 + 29] = np.clip(img * 255, 0, 255)
    return np.kron(out, np.ones((zoom, zoom), np.uint8))


def main() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from mnist_webgpu.drawings import pad as drawings
    from mnist_webgpu.site import charts

    parser = argparse.ArgumentParser(description="a PNG of the hand templates as the model sees them")
    parser.add_argument("--grid", type=Path, required=True)
    parser.add_argument("--count", type=int, default=0, help="also this many drawings per template")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for digit, style in STYLES:
        template = TEMPLATES[digit][style]
        row = [drawings.seen([np.asarray(s) * 0.8 + 0.1 for s in template]) / 255]
        row += [drawings.seen(place(hand(template, rng), rng, 0.1)) / 255 for _ in range(args.count)]
        rows.append(row)
    args.grid.write_bytes(charts.png_gray(grid(rows)))


if __name__ == "__main__":
    main()
