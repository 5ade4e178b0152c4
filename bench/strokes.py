"""The Python reference of site_src/preprocess.js's `preprocessStrokes`.

The page renders the pad's recorded pointer paths as vectors straight into MNIST's 20 px
box at one MNIST-like width, so the strokes the model sees do not depend on how large the
digit was drawn or how wide the pad's pen is. tests/test_pen.py holds the two equal; the
drawn-digit bench's offline mode uses this one as its stand-in of the page.
"""

from __future__ import annotations

import math

import numpy as np

# keep equal to site_src/preprocess.js
SIZE, BOX = 28, 20
STROKE = 2.5  # the pen's width in the 28x28 image, in pixels (chosen on validation drawn digits)
SUPERSAMPLE = 4  # coverage samples per pixel, per axis
MIN_EXTENT = 0.04  # a drawing smaller than this (pad fractions) is scaled as if it were this big
BOX_STEP = 0.005  # pad fractions between the points whose box is the drawing's box
CENTRE = 14  # the centre of mass goes to pixel index 14, as in preprocess()


def _segment_distance2(px, py, a, b):
    d = b - a
    dd = float(d @ d)
    t = 0.0 if dd == 0 else np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / dd, 0, 1)
    return (px - a[0] - t * d[0]) ** 2 + (py - a[1] - t * d[1]) ** 2


def _dense(pts: np.ndarray) -> np.ndarray:
    """The polyline's points with ones every BOX_STEP at most between them: a box of visible
    points must not lose a long straight segment whose end was rubbed out."""
    out = [pts[:1]]
    for a, b in zip(pts, pts[1:], strict=False):
        d = b - a
        n = max(1, math.ceil(math.sqrt(d[0] * d[0] + d[1] * d[1]) / BOX_STEP))
        out.append(a + (np.arange(1, n + 1)[:, None] / n) * d)
    return np.concatenate(out)


def _visible_points(strokes: list[dict]) -> np.ndarray:
    """Points along pen strokes that no later eraser stroke covers."""
    kept = []
    for k, s in enumerate(strokes):
        if s.get("tool", "pen") != "pen":
            continue
        pts = _dense(np.asarray(s["points"], np.float64))
        alive = np.ones(len(pts), bool)
        for e in strokes[k + 1 :]:
            if e.get("tool") != "eraser":
                continue
            ep = np.asarray(e["points"], np.float64)
            r2 = (e["width"] / 2) ** 2
            for a, b in zip(ep, ep[1:], strict=False) if len(ep) > 1 else [(ep[0], ep[0])]:
                alive &= _segment_distance2(pts[:, 0], pts[:, 1], a, b) > r2
        kept.append(pts[alive])
    return np.concatenate(kept) if kept else np.zeros((0, 2))


def _raster(strokes: list[dict], scale: float, ox: float, oy: float, stroke: float) -> np.ndarray:
    """Coverage of a 28x28 image: pad point p lands at (p - o) * scale (pixel units).

    Per stroke, the samples inside any of its segments' capsules (a union, so one stroke's
    segments are tested together); strokes in drawing order, an eraser clearing its samples.
    """
    n = SIZE * SUPERSAMPLE
    centres = (np.arange(n) + 0.5) / SUPERSAMPLE
    ink = np.zeros((n, n), bool)
    for s in strokes:
        pts = (np.asarray(s["points"], np.float64) - [ox, oy]) * scale
        is_pen = s.get("tool", "pen") == "pen"
        r = stroke / 2 if is_pen else s["width"] * scale / 2
        a, b = (pts[:-1], pts[1:]) if len(pts) > 1 else (pts, pts)
        lo = np.floor((pts.min(0) - r) * SUPERSAMPLE).astype(int).clip(0, n)
        hi = np.ceil((pts.max(0) + r) * SUPERSAMPLE).astype(int).clip(0, n)
        if lo[0] >= hi[0] or lo[1] >= hi[1]:
            continue
        px = centres[None, None, lo[0] : hi[0]]
        py = centres[None, lo[1] : hi[1], None]
        ax, ay = a[:, 0, None, None], a[:, 1, None, None]
        dx, dy = (b - a)[:, 0, None, None], (b - a)[:, 1, None, None]
        dd = dx * dx + dy * dy
        with np.errstate(invalid="ignore", divide="ignore"):
            t = np.where(dd == 0, 0.0, np.clip(((px - ax) * dx + (py - ay) * dy) / dd, 0, 1))
        inside = (((px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2) <= r * r).any(axis=0)
        if is_pen:
            ink[lo[1] : hi[1], lo[0] : hi[0]] |= inside
        else:
            ink[lo[1] : hi[1], lo[0] : hi[0]] &= ~inside
    return ink.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def render_strokes(strokes: list[dict], stroke: float = STROKE) -> tuple[np.ndarray, float] | None:
    """The 28x28 image the page's model sees for pad strokes, and the drawing's extent.

    `strokes`: dicts of tool ("pen" | "eraser"), width (pad fraction) and points ([x, y] pad
    fractions), in drawing order. The visible pen centre lines' bounding box, widened by the
    stroke, is scaled to 20 px on its long side, its middle on the image's middle (so the
    20 px fall on whole pixels, as in MNIST); the strokes are rendered there `stroke` px
    wide (erasers at their own pad width, scaled alike); then the image is moved by whole
    pixels so that its centre of mass is at pixel (14, 14), as MNIST's digits were.
    None when no pen ink is visible.
    """
    pts = _visible_points(strokes)
    if not len(pts):
        return None
    lo, hi = pts.min(0), pts.max(0)
    extent = float(max(hi - lo))
    scale = (BOX - stroke) / max(extent, MIN_EXTENT)
    mid = (lo + hi) / 2
    image = _raster(strokes, scale, mid[0] - SIZE / 2 / scale, mid[1] - SIZE / 2 / scale, stroke)
    mass = image.sum()
    if mass <= 0:
        return None
    gy, gx = np.mgrid[0:SIZE, 0:SIZE]
    dx = math.floor(CENTRE - (image * gx).sum() / mass + 0.5)
    dy = math.floor(CENTRE - (image * gy).sum() / mass + 0.5)
    out = np.zeros_like(image)
    src = image[max(0, -dy) : SIZE - max(0, dy), max(0, -dx) : SIZE - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out, extent
