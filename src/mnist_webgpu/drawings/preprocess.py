"""The Python reference of site_src/preprocess.js's `preprocessStrokes`.

The page renders the pad's recorded pointer paths as vectors straight into MNIST's 20 px
box at one MNIST-like width, so the strokes the model sees do not depend on how large the
digit was drawn or how wide the pad's pen is. tests/unit/drawings/test_pen.py holds the two equal; the
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
CENTRE = 14  # the centre of mass goes to pixel index 14, as MNIST's did
PIECE = 1.0  # pixels: the longest piece of a segment tested over one window of cells
MAX_SHEAR = 0.5  # columns per row (27 degrees): chosen on validation drawn digits and non-digits
MIN_SPREAD = 1.0  # px^2: a drawing whose ink varies less in height than this is not sheared


def _segment_distance2(px, py, a, b):
    d = b - a
    dd = float(d @ d)
    t = 0.0 if dd == 0 else np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / dd, 0, 1)
    return (px - a[0] - t * d[0]) ** 2 + (py - a[1] - t * d[1]) ** 2


def _dense(pts: np.ndarray) -> np.ndarray:
    """The polyline's points with ones every BOX_STEP at most between them: a box of visible
    points must not lose a long straight segment whose end was rubbed out."""
    d = np.diff(pts, axis=0)
    n = np.maximum(1, np.ceil(np.sqrt((d * d).sum(1)) / BOX_STEP)).astype(int)
    seg = np.repeat(np.arange(len(d)), n)
    # the k-th of n points along segment i: a + (k / n) * d, for k = 1..n
    k = np.arange(len(seg)) - np.repeat(np.cumsum(n) - n, n) + 1
    return np.concatenate([pts[:1], pts[seg] + (k / n[seg])[:, None] * d[seg]])


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


def _capsule_cells(pts: np.ndarray, r: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of the supersample cells whose centres lie within r of the polyline `pts`
    (pixel units), inside the n x n grid: the union of its segments' capsules.

    A capsule is the union of the capsules of its pieces, so long segments are cut into
    pieces at most PIECE pixels long and every piece is tested over one small window of
    cells round it, all pieces at once.
    """
    a, b = (pts[:-1], pts[1:]) if len(pts) > 1 else (pts, pts)
    length = np.sqrt(((b - a) ** 2).sum(1))
    cuts = np.maximum(1, np.ceil(length / PIECE)).astype(int)
    seg = np.repeat(np.arange(len(a)), cuts)
    k = (np.arange(len(seg)) - np.repeat(np.cumsum(cuts) - cuts, cuts))[:, None]
    step = (b - a)[seg] / cuts[seg, None]
    a, b = a[seg] + k * step, a[seg] + (k + 1) * step
    window = int(math.ceil((PIECE + 2 * r) * SUPERSAMPLE)) + 2
    corner = np.floor((np.minimum(a, b) - r) * SUPERSAMPLE).astype(int)  # (pieces, [x, y])
    offsets = np.arange(window)
    cx = corner[:, 0, None, None] + offsets[None, None, :]  # (pieces, 1, window)
    cy = corner[:, 1, None, None] + offsets[None, :, None]  # (pieces, window, 1)
    px, py = (cx + 0.5) / SUPERSAMPLE, (cy + 0.5) / SUPERSAMPLE
    ax, ay = a[:, 0, None, None], a[:, 1, None, None]
    dx, dy = (b - a)[:, 0, None, None], (b - a)[:, 1, None, None]
    dd = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(dd == 0, 0.0, np.clip(((px - ax) * dx + (py - ay) * dy) / dd, 0, 1))
    inside = ((px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2) <= r * r
    inside &= (cx >= 0) & (cx < n) & (cy >= 0) & (cy < n)
    rows = np.broadcast_to(cy, inside.shape)[inside]
    cols = np.broadcast_to(cx, inside.shape)[inside]
    return rows, cols


def _raster(strokes: list[dict], scale: float, ox: float, oy: float, stroke: float) -> np.ndarray:
    """Coverage of a 28x28 image: pad point p lands at (p - o) * scale (pixel units).

    Per stroke, the samples inside any of its segments' capsules (a union, so one stroke's
    segments are tested together); strokes in drawing order, an eraser clearing its samples.
    """
    n = SIZE * SUPERSAMPLE
    ink = np.zeros((n, n), bool)
    for s in strokes:
        pts = (np.asarray(s["points"], np.float64) - [ox, oy]) * scale
        is_pen = s.get("tool", "pen") == "pen"
        r = stroke / 2 if is_pen else s["width"] * scale / 2
        rows, cols = _capsule_cells(pts, r, n)
        ink[rows, cols] = is_pen
    return ink.reshape(SIZE, SUPERSAMPLE, SIZE, SUPERSAMPLE).mean(axis=(1, 3))


def render_strokes(strokes: list[dict], stroke: float = STROKE) -> tuple[np.ndarray, float] | None:
    """The 28x28 image the page's model sees for pad strokes, and the drawing's extent.

    `strokes`: dicts of tool ("pen" | "eraser"), width (pad fraction) and points ([x, y] pad
    fractions), in drawing order. The visible pen centre lines' bounding box, widened by the
    stroke, is scaled to 20 px on its long side, its middle on the image's middle (so the
    20 px fall on whole pixels, as in MNIST); the strokes are rendered there `stroke` px
    wide (erasers at their own pad width, scaled alike); then the image is moved by whole
    pixels so that its centre of mass is at pixel (14, 14), as MNIST's digits were, and its
    slant is sheared away (`deskew`: the models see MNIST's digits deskewed too).
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
    return deskew(out[None])[0], extent


def deskew(images: np.ndarray) -> np.ndarray:
    """(N, 28, 28) images, each with its slant sheared away: float64, in the input's range.

    Row y moves sideways by `shear * (y - cy)`, where `shear` is the ink's covariance of x
    and y over its variance in y and cy its centre of mass: the drawing's main axis stands
    upright and the centre of mass stays put. Linear interpolation along the row, zeros
    outside. A drawing with little height (a dash) is left as it is; the shear is capped so
    that a stroke leaning further than MAX_SHEAR columns per row is not laid flat.
    """
    x = np.asarray(images, np.float64).reshape(-1, SIZE, SIZE)
    axis = np.arange(SIZE, dtype=np.float64)
    mass = x.sum((1, 2))
    safe = np.where(mass > 0, mass, 1.0)
    row_mass, col_mass = x.sum(2), x.sum(1)  # (N, 28) each
    cy, cx = row_mass @ axis / safe, col_mass @ axis / safe
    dy = axis[None, :] - cy[:, None]  # (N, 28): each row's height from the centre of mass
    spread = (row_mass * dy * dy).sum(1) / safe
    row_x = (x * (axis[None, None, :] - cx[:, None, None])).sum(2)  # (N, 28)
    cov = (row_x * dy).sum(1) / safe
    shear = np.where(spread >= MIN_SPREAD, cov / np.maximum(spread, MIN_SPREAD), 0.0)
    shear = np.clip(shear, -MAX_SHEAR, MAX_SHEAR)
    move = shear[:, None] * dy  # output column c of row y reads source column c + move
    left = np.floor(move)
    right_weight = (move - left)[:, :, None]
    pad = SIZE + 1  # |move| < SIZE * MAX_SHEAR, so every read lands in the zero padding at worst
    padded = np.zeros((len(x), SIZE, SIZE + 2 * pad))
    padded[:, :, pad : pad + SIZE] = x
    at = (left[:, :, None] + axis[None, None, :] + pad).astype(np.intp)
    return (
        np.take_along_axis(padded, at, 2) * (1 - right_weight)
        + np.take_along_axis(padded, at + 1, 2) * right_weight
    )


def upright(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) images (MNIST's) as the page's models see them: deskewed, uint8."""
    out = np.empty_like(images, dtype=np.uint8)
    chunk = 5000  # bounded memory: deskew holds ~chunk x 28 x 86 float64 at a time
    for lo in range(0, len(images), chunk):
        out[lo : lo + chunk] = np.clip(np.rint(deskew(images[lo : lo + chunk])), 0, 255)
    return out
