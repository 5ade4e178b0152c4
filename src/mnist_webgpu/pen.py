"""Digits as a pen draws them: skeletons, pen redraws for training, and the page's stroke rendering.

A person draws a digit as one pen line along its centre, of one width; MNIST's ink is a
scanned stroke of varying width. Three pieces bridge the two:

- `skeletons`: Zhang-Suen thinning of a batch of digits to one-pixel centre lines,
  vectorized over the batch (the training set is thinned in seconds);
- `redraw`: those centre lines drawn again with a round pen of a random width each,
  deterministic for a seed: the training augmentation that shows a model pen strokes;
- `render_strokes`: the Python reference of site_src/preprocess.js's `preprocessStrokes`,
  which renders the pad's recorded pointer paths as vectors straight into MNIST's 20 px box
  at one MNIST-like width, so the strokes the model sees do not depend on how large the
  digit was drawn or how wide the pad's pen is. tests/test_pen.py holds the two to agree.
"""

from __future__ import annotations

import math

import numpy as np

INK_THRESHOLD = 100  # MNIST pixels at or above this are ink for the skeleton
# --- the page's vector rendering (keep equal to site_src/preprocess.js) ---
SIZE, BOX = 28, 20
STROKE = 2.5  # the pen's width in the 28x28 image, in pixels (chosen on validation drawn digits)
SUPERSAMPLE = 4  # coverage samples per pixel, per axis
MIN_EXTENT = 0.04  # a drawing smaller than this (pad fractions) is scaled as if it were this big
BOX_STEP = 0.005  # pad fractions between the points whose box is the drawing's box
CENTRE = 14  # the centre of mass goes to pixel index 14, as in preprocess()


def skeletons(images: np.ndarray, threshold: int = INK_THRESHOLD) -> np.ndarray:
    """(N, H, W) uint8 -> (N, H, W) bool one-pixel-wide centre lines (Zhang-Suen thinning).

    Each phase removes, all at once, the ink pixels that its rule marks on the state before
    the phase, exactly as the per-pixel loop in bench/drawn_digits.py does.
    """
    ink = np.pad(np.asarray(images) >= threshold, ((0, 0), (1, 1), (1, 1)))
    h, w = ink.shape[1] - 2, ink.shape[2] - 2
    # neighbours p2..p9, clockwise from north, as (row, col) offsets
    offsets = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    active = np.ones(len(ink), bool)  # images still changing
    while active.any():
        idx = np.flatnonzero(active)
        sub = ink[idx]
        changed = np.zeros(len(idx), bool)
        for phase in (0, 1):
            c = sub[:, 1:-1, 1:-1]
            p = [sub[:, 1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w].astype(np.uint8) for dr, dc in offsets]
            count = sum(p)
            transitions = sum((p[i] == 0) & (p[(i + 1) % 8] == 1) for i in range(8))
            if phase == 0:
                corner = ((p[0] & p[2] & p[4]) == 0) & ((p[2] & p[4] & p[6]) == 0)
            else:
                corner = ((p[0] & p[2] & p[6]) == 0) & ((p[0] & p[4] & p[6]) == 0)
            remove = c & (count >= 2) & (count <= 6) & (transitions == 1) & corner
            sub[:, 1:-1, 1:-1] &= ~remove
            changed |= remove.any(axis=(1, 2))
        ink[idx] = sub
        active[idx] = changed
    return ink[:, 1:-1, 1:-1]


def _disc_offsets(radius: float) -> list[tuple[int, int, float]]:
    reach = int(math.ceil(radius + 0.5))
    return [
        (dy, dx, d)
        for dy in range(-reach, reach + 1)
        for dx in range(-reach, reach + 1)
        if (d := math.hypot(dy, dx)) < radius + 0.5
    ]


def redraw(images: np.ndarray, widths: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Each digit's skeleton drawn again with a round pen `widths[i]` pixels wide, uint8.

    A pixel at distance d from the nearest skeleton pixel gets coverage clip(w/2 + 0.5 - d):
    full inside the pen, a one-pixel ramp at its edge, like MNIST's anti-aliased strokes.
    """
    images = np.asarray(images)
    widths = np.asarray(widths, np.float32)
    if len(widths) != len(images):
        raise ValueError(f"redraw: {len(images)} images but {len(widths)} widths")
    out = np.zeros(images.shape, np.uint8)
    reach = int(math.ceil(float(widths.max(initial=0)) / 2 + 0.5))
    offsets = _disc_offsets(float(widths.max(initial=0)) / 2)
    for lo in range(0, len(images), chunk):
        skel = skeletons(images[lo : lo + chunk])
        half = widths[lo : lo + chunk, None, None] / 2 + 0.5
        padded = np.pad(skel, ((0, 0), (reach, reach), (reach, reach)))
        h, w = skel.shape[1:]
        cover = np.zeros(skel.shape, np.float32)
        for dy, dx, d in offsets:
            near = padded[:, reach + dy : reach + dy + h, reach + dx : reach + dx + w]
            np.maximum(cover, np.where(near, np.clip(half - d, 0, 1), 0), out=cover)
        out[lo : lo + chunk] = np.round(cover * 255).astype(np.uint8)
    return out


def pen_copies(images: np.ndarray, fraction: float, seed: int, widths=(1.5, 3.5)) -> np.ndarray:
    """Pen redraws of the first round(fraction * N) images (a seeded random pick), random widths."""
    count = round(fraction * len(images))
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(images), count, replace=False))
    return pick, redraw(images[pick], rng.uniform(*widths, count))


# --- the page's vector preprocessing, in Python (site_src/preprocess.js: preprocessStrokes) ---


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
    """Coverage of a 28x28 image: pad point p lands at (p - o) * scale (pixel units)."""
    n = SIZE * SUPERSAMPLE
    centres = (np.arange(n) + 0.5) / SUPERSAMPLE
    ink = np.zeros((n, n), bool)
    for s in strokes:
        pts = (np.asarray(s["points"], np.float64) - [ox, oy]) * scale
        pen = s.get("tool", "pen") == "pen"
        r = stroke / 2 if pen else s["width"] * scale / 2
        for a, b in zip(pts, pts[1:], strict=False) if len(pts) > 1 else [(pts[0], pts[0])]:
            lo = np.floor((np.minimum(a, b) - r) * SUPERSAMPLE).astype(int).clip(0, n)
            hi = np.ceil((np.maximum(a, b) + r) * SUPERSAMPLE).astype(int).clip(0, n)
            if lo[0] >= hi[0] or lo[1] >= hi[1]:
                continue
            inside = (
                _segment_distance2(centres[None, lo[0] : hi[0]], centres[lo[1] : hi[1], None], a, b) <= r * r
            )
            if pen:
                ink[lo[1] : hi[1], lo[0] : hi[0]] |= inside
            else:
                ink[lo[1] : hi[1], lo[0] : hi[0]] &= ~inside
    return ink.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def render_strokes(strokes: list[dict], stroke: float = STROKE) -> tuple[np.ndarray, float] | None:
    """The 28x28 image the page's model sees for pad strokes, and the drawing's extent.

    `strokes`: dicts of tool ("pen" | "eraser"), width (pad fraction) and points ([x, y] pad
    fractions), in drawing order. The visible pen centre lines' bounding box, widened by the
    stroke, is scaled to 20 px on its long side; the strokes are rendered there `stroke` px
    wide (erasers at their own pad width, scaled alike); then the whole drawing is moved so
    its centre of mass is at pixel (14, 14), exactly (a second rendering), not rounded.
    None when no pen ink is visible.
    """
    pts = _visible_points(strokes)
    if not len(pts):
        return None
    lo, hi = pts.min(0), pts.max(0)
    extent = float(max(hi - lo))
    scale = (BOX - stroke) / max(extent, MIN_EXTENT)
    mid = (lo + hi) / 2
    # first the box's centre at the image's centre, then the centre of mass at (14, 14)
    ox, oy = mid[0] - SIZE / 2 / scale, mid[1] - SIZE / 2 / scale
    first = _raster(strokes, scale, ox, oy, stroke)
    mass = first.sum()
    if mass <= 0:
        return None
    gy, gx = np.mgrid[0:SIZE, 0:SIZE]
    cx, cy = (first * gx).sum() / mass, (first * gy).sum() / mass
    ox, oy = ox + (cx - CENTRE) / scale, oy + (cy - CENTRE) / scale
    return _raster(strokes, scale, ox, oy, stroke), extent
