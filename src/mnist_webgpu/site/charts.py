"""Build-time graphics for the static site: SVG charts and PNG digits, no chart library.

Every SVG is a complete, well-formed XML fragment meant to be inlined in HTML. Colours
come from CSS classes (style.css), so charts follow the light/dark theme; the only
per-element styling is SVG presentation attributes, which a strict CSP allows.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

import numpy as np


def _num(v: float) -> str:
    """Compact coordinates: two decimals, no trailing zeros."""
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s == "-0" else s


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 x 10^k steps)."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 10))
        v += step
    if ticks[-1] < hi - step * 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _fmt_tick(v: float, percent: bool) -> str:
    if percent:
        return f"{v * 100:.4g}%"
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:.3g}"


LEFT, RIGHT, TOP, BOTTOM = 56, 16, 16, 40  # plot margins, room for tick labels


def _open(title: str, width: int, height: int, svg_class: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{svg_class}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label={quoteattr(title)}>',
        f"<title>{escape(title)}</title>",
    ]


def _no_data(parts: list[str], width: int, height: int) -> str:
    parts.append(
        f'<text class="chart-empty" x="{width / 2}" y="{height / 2}" text-anchor="middle">'
        "no data</text></svg>"
    )
    return "".join(parts)


def _axes(
    parts: list[str],
    xt: list[float],
    yt: list[float],
    *,
    width: int,
    height: int,
    x_label: str,
    percent: bool,
):
    """Grid, ticks, x axis and its label; returns the data -> SVG coordinate maps."""
    pw, ph = width - LEFT - RIGHT, height - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - xt[0]) / ((xt[-1] - xt[0]) or 1) * pw

    def sy(y: float) -> float:
        return TOP + ph - (y - yt[0]) / ((yt[-1] - yt[0]) or 1) * ph

    for t in yt:
        y = sy(t)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{LEFT + pw}" y1="{_num(y)}" y2="{_num(y)}"/>')
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{_num(y + 4)}" text-anchor="end">'
            f"{escape(_fmt_tick(t, percent))}</text>"
        )
    for t in xt:
        parts.append(
            f'<text class="tick" x="{_num(sx(t))}" y="{TOP + ph + 16}" text-anchor="middle">'
            f"{escape(_fmt_tick(t, False))}</text>"
        )
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT + pw}" y1="{TOP + ph}" y2="{TOP + ph}"/>')
    parts.append(
        f'<text class="axis-label" x="{LEFT + pw / 2}" y="{height - 6}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    return sx, sy


def line_chart(
    xs: Sequence[float],
    ys: Sequence[float | None],
    *,
    title: str,
    x_label: str = "step",
    percent: bool = False,
    css_class: str = "series-a",
    width: int = 480,
    height: int = 260,
) -> str:
    """One series as an SVG line chart with axes, grid and a text title (None values are gaps)."""
    pairs = zip(xs, ys, strict=False)
    points = [(float(x), float(y)) for x, y in pairs if y is not None and math.isfinite(y)]
    parts = _open(title, width, height, "chart")
    if not points:
        return _no_data(parts, width, height)
    x_lo, x_hi = min(p[0] for p in points), max(p[0] for p in points)
    y_lo, y_hi = min(p[1] for p in points), max(p[1] for p in points)
    if percent:
        y_hi = min(1.0, y_hi)
    yt = nice_ticks(y_lo, y_hi, 5)
    xt = nice_ticks(x_lo if x_lo != x_hi else 0, x_hi, 6)
    sx, sy = _axes(parts, xt, yt, width=width, height=height, x_label=x_label, percent=percent)
    path = " ".join(f"{_num(sx(x))},{_num(sy(y))}" for x, y in points)
    parts.append(f'<polyline class="line {css_class}" fill="none" points="{path}"/>')
    if len(points) <= 40:
        for x, y in points:
            parts.append(f'<circle class="dot {css_class}" cx="{_num(sx(x))}" cy="{_num(sy(y))}" r="2.5"/>')
    last_x, last_y = points[-1]
    label = _fmt_tick(last_y, percent) if not percent else f"{last_y * 100:.2f}%"
    right_edge = width - RIGHT - 2
    parts.append(
        f'<text class="last" x="{_num(min(sx(last_x), right_edge))}" y="{_num(max(sy(last_y) - 8, 12))}" '
        f'text-anchor="end">{escape(label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def scatter(
    points: Sequence[tuple[float, float, str]],
    *,
    title: str,
    x_label: str = "training seconds",
    best: str = "",
    width: int = 480,
    height: int = 280,
) -> str:
    """(x, accuracy, label) points on linear axes; the point labelled `best` is drawn larger.

    Each dot carries a <title> with its label, so hovering names the trial.
    """
    pts = [(float(x), float(y), lbl) for x, y, lbl in points if math.isfinite(x) and math.isfinite(y)]
    parts = _open(title, width, height, "chart scatter")
    if not pts:
        return _no_data(parts, width, height)
    xt = nice_ticks(0, max(p[0] for p in pts), 6)  # from zero: time is compared as a ratio
    yt = nice_ticks(min(p[1] for p in pts), min(1.0, max(p[1] for p in pts)), 5)
    sx, sy = _axes(parts, xt, yt, width=width, height=height, x_label=x_label, percent=True)
    for x, y, lbl in sorted(pts, key=lambda p: p[2] == best):  # the best on top
        cls, r = ("dot series-b best", 6) if lbl == best else ("dot series-a", 4)
        parts.append(
            f'<circle class="{cls}" cx="{_num(sx(x))}" cy="{_num(sy(y))}" r="{r}">'
            f"<title>{escape(lbl)}: {y * 100:.2f}% in {x:.1f} s</title></circle>"
        )
    parts.append("</svg>")
    return "".join(parts)


def confusion_matrix(matrix: Sequence[Sequence[int]], *, title: str = "Confusion matrix") -> str:
    """10x10 heat map: rows true digit, columns predicted; shade = share of the true row.

    The diagonal and the errors use two classes so a few mistakes stay visible next to
    thousands of correct answers (errors are shaded on their own, sharper scale).
    """
    m = np.asarray(matrix, dtype=np.int64)
    n = m.shape[0]
    cell, left, top = 40, 44, 44
    size_w, size_h = left + n * cell + 8, top + n * cell + 8
    rows = m.sum(axis=1, keepdims=True).clip(min=1)
    share = m / rows
    off = share.copy()
    np.fill_diagonal(off, 0)
    off_max = float(off.max()) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart heat" viewBox="0 0 {size_w} {size_h}" '
        f'role="img" aria-label={quoteattr(title + ": rows are the true digit, columns the prediction")}>',
        f"<title>{escape(title)}</title>",
        f'<text class="axis-label" x="{left + n * cell / 2}" y="14" text-anchor="middle">predicted</text>',
        f'<text class="axis-label" x="12" y="{top + n * cell / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {top + n * cell / 2})">true</text>',
    ]
    for i in range(n):
        mid = i * cell + cell / 2
        parts.append(f'<text class="tick" x="{left + mid}" y="{top - 8}" text-anchor="middle">{i}</text>')
        parts.append(f'<text class="tick" x="{left - 8}" y="{top + mid + 4}" text-anchor="end">{i}</text>')
    for r in range(n):
        for c in range(n):
            x, y = left + c * cell, top + r * cell
            v = int(m[r, c])
            if r == c:
                cls, opacity = "cell-hit", 0.15 + 0.85 * float(share[r, c])
            else:
                cls, opacity = "cell-miss", (0.12 + 0.88 * float(off[r, c]) / off_max) if v else 0.0
            parts.append(
                f'<rect class="{cls}" x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" rx="3" '
                f'fill-opacity="{_num(opacity)}"><title>true {r}, predicted {c}: {v}</title></rect>'
            )
            if v:
                strong = " strong" if (r == c and share[r, c] > 0.5) or (r != c and opacity > 0.6) else ""
                parts.append(
                    f'<text class="cell-label{strong}" x="{x + (cell - 2) / 2}" y="{y + cell / 2 + 3}" '
                    f'text-anchor="middle">{v}</text>'
                )
    parts.append("</svg>")
    return "".join(parts)


def class_accuracy(per_class: Sequence[float], *, title: str = "Per-class accuracy") -> str:
    """One row of ten cells shaded by the error rate, each labelled with its accuracy."""
    n = len(per_class)
    cell, h = 48, 64
    worst = max((1 - a for a in per_class), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart heat" viewBox="0 0 {n * cell} {h}" '
        f'role="img" aria-label={quoteattr(title)}>',
        f"<title>{escape(title)}</title>",
    ]
    for i, acc in enumerate(per_class):
        x = i * cell
        err = 1 - float(acc)
        opacity = 0.08 + 0.8 * err / worst
        parts.append(
            f'<rect class="cell-miss" x="{x + 1}" y="18" width="{cell - 2}" height="{h - 20}" rx="4" '
            f'fill-opacity="{_num(opacity)}"><title>digit {i}: {acc * 100:.2f}%</title></rect>'
        )
        parts.append(f'<text class="tick" x="{x + cell / 2}" y="12" text-anchor="middle">{i}</text>')
        parts.append(
            f'<text class="cell-label{" strong" if opacity > 0.6 else ""}" x="{x + cell / 2}" '
            f'y="{18 + (h - 20) / 2 + 4}" text-anchor="middle">'
            f"{acc * 100:.1f}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


# --- PNG without an imaging library -------------------------------------------------------


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_gray(image: np.ndarray) -> bytes:
    """An 8-bit greyscale PNG of a 2-D uint8 array."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D image, got shape {img.shape}")
    h, w = img.shape
    raw = b"".join(b"\x00" + img[y].tobytes() for y in range(h))  # filter type 0 per row
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(raw, 9))
        + _chunk(b"IEND", b"")
    )


def png_data_uri(image: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_gray(image)).decode("ascii")
