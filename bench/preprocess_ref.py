"""The app's preprocessing (site_src/preprocess.js) in Python: crop to the ink, scale the long
side to 20 px by area averaging, centre the mass at (14, 14). The tests check the page against it;
the drawn-digits bench simulates strokes with it."""

from __future__ import annotations

import math

import numpy as np


def area_weights(out_n: int, f: float) -> list[list[tuple[int, float]]]:
    rows = []
    for o in range(out_n):
        a, b = o * f, (o + 1) * f
        taps = []
        for i in range(math.floor(a), math.ceil(b)):
            cover = min(i + 1, b) - max(i, a)
            if cover > 0:
                taps.append((i, cover / f))
        rows.append(taps)
    return rows


def preprocess_reference(ink: np.ndarray) -> np.ndarray | None:
    """28x28 float image, white on black, from ink in [0,1]; None when there is no ink."""
    ys, xs = np.nonzero(ink > 0)
    if len(xs) == 0:
        return None
    x0, y0 = xs.min(), ys.min()
    w, h = xs.max() - x0 + 1, ys.max() - y0 + 1
    crop = np.asarray(ink[y0 : y0 + h, x0 : x0 + w], np.float64)
    long = max(w, h)
    f = long / 20
    ow = max(1, math.floor(w * 20 / long + 0.5))
    oh = max(1, math.floor(h * 20 / long + 0.5))
    rx = np.zeros((ow, w))
    for o, taps in enumerate(area_weights(ow, f)):
        for i, c in taps:
            if i < w:
                rx[o, i] = c
    ry = np.zeros((oh, h))
    for o, taps in enumerate(area_weights(oh, f)):
        for i, c in taps:
            if i < h:
                ry[o, i] = c
    small = np.clip(ry @ crop @ rx.T, 0, 1)
    mass = small.sum()
    gy, gx = np.mgrid[0:oh, 0:ow]
    dx = math.floor(14 - (small * gx).sum() / mass + 0.5)
    dy = math.floor(14 - (small * gy).sum() / mass + 0.5)
    out = np.zeros((28, 28))
    for y in range(oh):
        for x in range(ow):
            if 0 <= y + dy < 28 and 0 <= x + dx < 28:
                out[y + dy, x + dx] = small[y, x]
    return out


def center_of_mass(img: np.ndarray) -> tuple[float, float]:
    gy, gx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return float((img * gy).sum() / img.sum()), float((img * gx).sum() / img.sum())
