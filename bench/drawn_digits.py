"""Draw MNIST test digits onto the app's canvas with pointer events; measure what it predicts.

Each digit is drawn with the app's own pen (pointer events at canvas scale, one pen width),
so the page's whole pipeline (stroke rendering, crop, scale, centre of mass, model) is
exercised. The figure to compare is the model's accuracy on the same digits fed directly.
How a digit becomes pen strokes (--method):

  rows   (the default) the digit filled row by row, drawn as large as the pad takes:
         horizontal strokes over the ink (the 28x28 image upsampled to the ink canvas,
         >= half intensity) eroded by the pen's radius, so that the pen's width grows them
         back to the ink's outline; plus its skeleton, for strokes thinner than the pen;
  fixed  its one-pixel skeleton, one stroke per skeleton edge, at one size for every digit
         (a 28x28 frame fills the pad): every stroke comes out ~2.5-3.5 px thick at 28x28;
  sized  its skeleton traced into strokes, drawn at the size at which the app's pen comes
         out as thick as the digit's own strokes once the page has normalized the drawing
         (clamped to the pad: a digit thinner than the pen allows is drawn as large as the
         pad takes); sized-pruned: the same without skeleton spurs shorter than that width.

The skeleton methods lose what thinning destroys (small loops filled with ink, short bars,
the shape at junctions) and score 2-3 points under the images; see README.md.

    python bench/drawn_digits.py [--site dist] [--count 300] [--models mlp,cnn] [--method M]
        [--json] [--failures DIR] [--offline]

--failures DIR writes, per misclassified digit, a PNG: the MNIST digit and what the model
saw (the page's 28x28 preview). --offline runs no browser: a Python stand-in of the pen and
the page's preprocessing draws validation digits (never the test set) and tinygrad runs the
site's weights, for choosing a method without looking at test digits.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from browser_env import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402

from mnist_webgpu import charts  # noqa: E402

NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
METHODS = ("fixed", "sized", "sized-pruned", "rows")
DEFAULT_METHOD = "rows"
INK_SIZE = 280  # the pad's ink canvas (site_src/draw.js): the grid the rows method fills
MARGIN = 0.01  # ink kept this far (a fraction of the pad) from the pad's edges

Point = tuple[int, int]
Stroke = list[list[float]]


def skeleton(image: np.ndarray, threshold: int = 100) -> np.ndarray:
    """Zhang-Suen thinning of the ink (pixels >= threshold) to a one-pixel-wide skeleton."""
    ink = np.pad(image >= threshold, 1).astype(np.uint8)
    changed = True
    while changed:
        changed = False
        for phase in (0, 1):
            remove = []
            for r, c in zip(*np.nonzero(ink), strict=True):
                p = [ink[r - 1, c], ink[r - 1, c + 1], ink[r, c + 1], ink[r + 1, c + 1],
                     ink[r + 1, c], ink[r + 1, c - 1], ink[r, c - 1], ink[r - 1, c - 1]]  # fmt: skip
                neighbours = sum(p)
                transitions = sum(p[i] == 0 and p[(i + 1) % 8] == 1 for i in range(8))
                if phase == 0:
                    corner = p[0] * p[2] * p[4] == 0 and p[2] * p[4] * p[6] == 0
                else:
                    corner = p[0] * p[2] * p[6] == 0 and p[0] * p[4] * p[6] == 0
                if 2 <= neighbours <= 6 and transitions == 1 and corner:
                    remove.append((r, c))
            for r, c in remove:
                ink[r, c] = 0
            changed |= bool(remove)
    return ink[1:-1, 1:-1].astype(bool)


def skeleton_points(image: np.ndarray) -> set[Point]:
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(skeleton(image)), strict=True)}


def graph(points: set[Point]) -> dict[Point, list[Point]]:
    """8-connected neighbours, without a diagonal that two 4-connected steps already join."""
    adj = {}
    for r, c in points:
        adj[(r, c)] = [
            (r + dr, c + dc)
            for dr, dc in NEIGHBOURS
            if (r + dr, c + dc) in points
            and not (dr and dc and ((r + dr, c) in points or (r, c + dc) in points))
        ]
    return adj


def trace(adj: dict[Point, list[Point]]) -> list[list[Point]]:
    """The skeleton as polylines: each runs between ends or junctions (or round a loop)."""
    seen: set[frozenset] = set()

    def walk(start: Point, nxt: Point) -> list[Point]:
        path = [start, nxt]
        seen.add(frozenset((start, nxt)))
        while len(adj[path[-1]]) == 2:
            cur = path[-1]
            step = [q for q in adj[cur] if frozenset((cur, q)) not in seen]
            if not step:
                break
            seen.add(frozenset((cur, step[0])))
            path.append(step[0])
        return path

    paths = []
    for p in sorted(adj):
        if not adj[p]:
            paths.append([p])
        elif len(adj[p]) != 2:
            paths += [walk(p, q) for q in adj[p] if frozenset((p, q)) not in seen]
    for p in sorted(adj):  # closed loops: nodes of two neighbours only
        paths += [walk(p, q) for q in adj[p] if frozenset((p, q)) not in seen]
    return paths


def path_length(path: list[Point]) -> float:
    return sum(math.hypot(a[0] - b[0], a[1] - b[1]) for a, b in zip(path, path[1:], strict=False))


def prune_spurs(points: set[Point], longest: float) -> set[Point]:
    """Drops branches from an end to a junction shorter than `longest` px (thinning artefacts)."""
    adj = graph(points)
    drop: set[Point] = set()
    for path in trace(adj):
        degrees = sorted((len(adj[path[0]]), len(adj[path[-1]])))
        if degrees[0] == 1 and degrees[1] >= 3 and path_length(path) < longest:
            drop |= {p for p in path if len(adj[p]) < 3}
    return points - drop


def _long_side(rows, cols) -> int:
    return max(max(rows) - min(rows), max(cols) - min(cols))


def stroke_thickness(image: np.ndarray, points: set[Point]) -> float:
    """The pen width w (MNIST px) whose strokes along the skeleton hold the digit's ink.

    A pen of width w along polylines of total length L covers L*w, plus a half disc
    (pi w^2 / 8) at each free end, minus ~w^2 / 2 of overlap per extra branch at a
    junction. Thinning also shortens every stroke, so the skeleton (longer side E) is
    stretched by k = (B - w) / E to give the drawing the digit's own extent B once the pen
    is added: solve L k w + c w^2 = the ink mass (pixel intensities / 255, summed) for w.
    """
    mass = float(image.sum()) / 255
    adj = graph(points)
    if not adj or mass <= 0:
        return 0.0
    length = sum(path_length(p) for p in trace(adj))
    ends = sum(1 if len(n) == 1 else 2 if not n else 0 for n in adj.values())
    joins = sum(len(n) - 2 for n in adj.values() if len(n) > 2)
    c = math.pi / 8 * ends - joins / 2
    ys, xs = np.nonzero(image)
    box = _long_side(ys, xs) + 1
    extent = _long_side(*zip(*adj, strict=True))
    if length > 0 and extent > 0:
        a, b = c - length / extent, length * box / extent  # a w^2 + b w - mass = 0
        if b * b + 4 * a * mass > 0:
            return 2 * mass / (b + math.sqrt(b * b + 4 * a * mass))
    disc = length**2 + 4 * c * mass  # no stretch
    if length > 0 and disc > 0:
        return 2 * mass / (length + math.sqrt(disc))
    return math.sqrt(4 * mass / math.pi)  # a dot


def sized_scale(thickness: float, extent: float, box: float, pen: float) -> float:
    """Pad fraction per MNIST pixel at which the pen comes out `thickness` px thick.

    The page scales a drawing's longer side to 20 px, so its strokes come out as thick,
    relative to the digit, as the pen is relative to the drawing. A skeleton of longer
    side `extent` drawn at `scale` spans extent * scale + pen: that is to the pen as the
    digit's longer side `box` is to `thickness`. It must also fit the pad: a digit thinner
    than the pen allows is drawn as large as the pad takes.
    """
    fit = (1 - pen - 2 * MARGIN) / extent if extent > 0 else math.inf
    if thickness <= 0:
        want = math.inf
    elif extent > 0 and box > thickness:
        want = pen * (box - thickness) / (thickness * extent)
    else:
        want = pen / thickness
    scale = min(want, fit)
    return scale if math.isfinite(scale) else 1.0


def _place(paths: list[list[Point]], scale: float) -> list[Stroke]:
    """(row, col) MNIST coordinates -> [x, y] pad fractions, the inked box centred on the pad."""
    rows = [r for path in paths for r, _ in path]
    cols = [c for path in paths for _, c in path]
    cy, cx = (min(rows) + max(rows)) / 2, (min(cols) + max(cols)) / 2
    return [[[0.5 + (c - cx) * scale, 0.5 + (r - cy) * scale] for r, c in path] for path in paths]


def fixed_strokes(image: np.ndarray) -> list[Stroke]:
    """Pen strokes (in fractions of the canvas) joining neighbouring skeleton pixels."""
    points = skeleton_points(image)

    def at(r: int, c: int) -> list[float]:
        return [(c + 0.5) / 28, (r + 0.5) / 28]

    segments = []
    for r, c in sorted(points):
        joined = False
        for dr, dc in NEIGHBOURS:
            if (r + dr, c + dc) in points:
                joined = True
                if (dr, dc) > (0, 0):  # each edge once
                    segments.append([at(r, c), at(r + dr, c + dc)])
        if not joined:
            segments.append([at(r, c), at(r, c)])
    return segments


def sized_strokes(image: np.ndarray, pen: float, prune: bool = False) -> list[Stroke]:
    points = skeleton_points(image)
    if not points:
        return []
    thickness = stroke_thickness(image, points)
    if prune:
        points = prune_spurs(points, thickness)
        thickness = stroke_thickness(image, points)
    ys, xs = np.nonzero(image)
    scale = sized_scale(thickness, _long_side(*zip(*points, strict=True)), _long_side(ys, xs) + 1, pen)
    return _place(trace(graph(points)), scale)


def _interp(n_out: int, coords: np.ndarray, n_in: int) -> np.ndarray:
    """Linear interpolation weights (n_out, n_in) at `coords` (pixel centres at i + 0.5), 0 outside."""
    g = coords - 0.5
    i = np.floor(g).astype(int)
    f = g - i
    w = np.zeros((n_out, n_in + 2))
    w[np.arange(n_out), np.clip(i + 1, 0, n_in + 1)] += 1 - f
    w[np.arange(n_out), np.clip(i + 2, 0, n_in + 1)] += f
    return w[:, 1:-1]


def erode_disc(mask: np.ndarray, radius: float) -> np.ndarray:
    """Binary erosion by a disc: the points whose whole disc of `radius` cells is inside."""
    r = int(radius)
    pad = r + 1
    m = np.pad(mask, pad)
    cs = np.concatenate([np.zeros((m.shape[0], 1), int), np.cumsum(m, axis=1)], axis=1)
    h, w = mask.shape
    x = np.arange(w) + pad
    out = np.ones_like(mask, dtype=bool)
    for dy in range(-r, r + 1):
        half = int(math.floor(math.sqrt(max(radius**2 - dy**2, 0))))
        rows = cs[pad + dy : pad + dy + h]
        out &= (rows[:, x + half + 1] - rows[:, x - half]) == 2 * half + 1
    return out


def _rows_at(img: np.ndarray, points: set[Point], centre, scale: float, pen: float) -> list[Stroke]:
    cy, cx = centre
    grid = INK_SIZE
    u = (np.arange(grid) + 0.5) / grid
    wx = _interp(grid, cx + (u - 0.5) / scale, img.shape[1])
    wy = _interp(grid, cy + (u - 0.5) / scale, img.shape[0])
    shape = wy @ img @ wx.T >= 0.5
    radius = pen / 2 * grid
    core = erode_disc(shape, radius)
    strokes = []
    for k in range(0, grid, max(1, int(radius / 2))):
        row = np.diff(np.concatenate([[0], core[k].astype(int), [0]]))
        for a, b in zip(np.nonzero(row == 1)[0], np.nonzero(row == -1)[0] - 1, strict=True):
            y = (k + 0.5) / grid
            strokes.append([[(a + 0.5) / grid, y], [(b + 0.5) / grid, y]])
    for path in trace(graph(points)):  # where the ink is thinner than the pen
        strokes.append([[0.5 + (c + 0.5 - cx) * scale, 0.5 + (r + 0.5 - cy) * scale] for r, c in path])
    return strokes


def row_strokes(image: np.ndarray, pen: float) -> list[Stroke]:
    """Horizontal strokes over the ink eroded by the pen's radius, plus the skeleton."""
    ys, xs = np.nonzero(image)
    if not len(xs):
        return []
    img = image.astype(np.float64) / 255
    centre = ((ys.min() + ys.max() + 1) / 2, (xs.min() + xs.max() + 1) / 2)
    points = skeleton_points(image)
    room = 1 - 2 * MARGIN
    scale = room / (_long_side(ys, xs) + 1)
    for _ in range(4):  # shrink until the pen's outline, not just its centre, fits the pad
        strokes = _rows_at(img, points, centre, scale, pen)
        span = max(np.ptp([p[i] for s in strokes for p in s]) for i in (0, 1)) + pen
        if span <= room + 1e-9:
            break
        scale *= (room - pen) / (span - pen)
    xy = np.array([p for s in strokes for p in s])
    shift = 0.5 - (xy.min(0) + xy.max(0)) / 2
    return [[[x + shift[0], y + shift[1]] for x, y in s] for s in strokes]


def strokes(image: np.ndarray, method: str = DEFAULT_METHOD, pen: float = 0.1) -> list[Stroke]:
    """Pen strokes, each a list of [x, y] points in fractions of the pad."""
    if method == "fixed":
        return fixed_strokes(image)
    if method == "sized":
        return sized_strokes(image, pen)
    if method == "sized-pruned":
        return sized_strokes(image, pen, prune=True)
    if method == "rows":
        return row_strokes(image, pen)
    raise ValueError(f"unknown method {method!r}: one of {', '.join(METHODS)}")


def pen_width(site: Path) -> float:
    """The app's PEN_WIDTH, read from the site's own draw.js (site_src's when not built)."""
    found = sorted(site.glob("assets/draw.*.js")) or [ROOT / "site_src" / "draw.js"]
    return float(re.search(r"PEN_WIDTH\s*=\s*([0-9.]+)", found[0].read_text()).group(1))


# --- a Python stand-in of the pad and the page's preprocessing ---------------------------


def render(strokes_: list[Stroke], pen: float, size: int = INK_SIZE, supersample: int = 3) -> np.ndarray:
    """The pad's ink canvas as coverage in [0, 1]: round-capped, round-joined strokes of width `pen`."""
    n = size * supersample
    centres = (np.arange(n) + 0.5) / n
    ink = np.zeros((n, n), dtype=bool)
    r = pen / 2
    for stroke in strokes_:
        pts = np.asarray(stroke, dtype=np.float64)
        pairs = list(zip(pts, pts[1:], strict=False)) or [(pts[0], pts[0])]
        for a, b in pairs:
            lo = np.clip(np.floor((np.minimum(a, b) - r) * n).astype(int), 0, n)
            hi = np.clip(np.ceil((np.maximum(a, b) + r) * n).astype(int) + 1, 0, n)
            x = centres[lo[0] : hi[0]][None, :]
            y = centres[lo[1] : hi[1]][:, None]
            d = b - a
            dd = float(d @ d)
            t = 0.0 if dd == 0 else np.clip(((x - a[0]) * d[0] + (y - a[1]) * d[1]) / dd, 0, 1)
            inside = (x - a[0] - t * d[0]) ** 2 + (y - a[1] - t * d[1]) ** 2 <= r * r
            ink[lo[1] : hi[1], lo[0] : hi[0]] |= inside
    return ink.reshape(size, supersample, size, supersample).mean(axis=(1, 3))


def simulate(images: np.ndarray, method: str, pen: float) -> np.ndarray:
    """What the page's model would see for each digit drawn by `method` (Python stand-in)."""
    from sitekit import preprocess_reference

    out = np.zeros((len(images), 28, 28), np.float32)
    for i, image in enumerate(images):
        ink = render(strokes(image, method, pen), pen)
        seen = preprocess_reference(ink)
        if seen is not None:
            out[i] = seen
    return out


def site_logits(site: Path, model: str, pixels: np.ndarray) -> np.ndarray:
    """tinygrad on the CPU with the weights the site's page loads (its manifest's default form)."""
    from onnx_model import expanded_weights
    from tinygrad import Tensor

    from mnist_webgpu import export, models

    model_dir = site / "models" / model
    manifest = json.loads((model_dir / "manifest.json").read_text())
    weights = expanded_weights(model_dir, manifest.get("default_form", "f32"))
    net = models.ARCHITECTURES[manifest["model"]["arch"]](tuple(manifest["model"]["widths"]))
    export.set_weights(net, weights)
    return np.concatenate(
        [
            net(Tensor(pixels[i : i + 500, None].astype(np.float32))).numpy()
            for i in range(0, len(pixels), 500)
        ]
    )


# --- the page ---------------------------------------------------------------------------------

DRAW_JS = """
async ([strokes]) => {
  const canvas = document.querySelector('[data-testid="canvas"]');
  const rect = canvas.getBoundingClientRect();
  const fire = (type, [fx, fy]) => canvas.dispatchEvent(new PointerEvent(type, {
    pointerId: 7, pointerType: "pen", isPrimary: true, bubbles: true, cancelable: true,
    buttons: type === "pointerup" ? 0 : 1, pressure: type === "pointerup" ? 0 : 0.5,
    clientX: rect.left + fx * rect.width, clientY: rect.top + fy * rect.height,
  }));
  for (const points of strokes) {
    fire("pointerdown", points[0]);
    for (const p of points.slice(1)) fire("pointermove", p);
    fire("pointerup", points[points.length - 1]);
  }
}
"""

PREVIEW_JS = """() => Array.from(document.querySelector('[data-testid=preview]').getContext('2d')
  .getImageData(0, 0, 28, 28).data.filter((_, i) => i % 4 === 0))"""


def predict_drawn(page, image: np.ndarray, method: str, pen: float) -> int | None:
    page.get_by_test_id("clear").click()
    page.evaluate(DRAW_JS, [strokes(image, method, pen)])
    page.wait_for_selector("[data-settled=true]", timeout=30000)
    last = page.get_by_test_id("prediction").inner_text().strip()
    return int(last) if last else None


def measure(
    site: Path,
    images: np.ndarray,
    labels: np.ndarray,
    models: list[str],
    on_page=None,
    method: str = DEFAULT_METHOD,
    failures: Path | None = None,
) -> dict[str, dict]:
    from playwright.sync_api import sync_playwright

    pen = pen_width(site)
    results = {}
    with serve(site) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        if on_page:
            on_page(page)
        page.goto(url)
        page.wait_for_selector("[data-ready=true]", timeout=30000)
        page.get_by_test_id("canvas").scroll_into_view_if_needed()
        for model in models:
            page.get_by_test_id("model-select").select_option(model)
            page.wait_for_selector("[data-ready=true]", timeout=30000)
            predictions = []
            for i, (image, label) in enumerate(zip(images, labels, strict=True)):
                predictions.append(predict_drawn(page, image, method, pen))
                if failures and predictions[-1] != int(label):
                    seen = np.array(page.evaluate(PREVIEW_JS), np.uint8).reshape(28, 28)
                    name = f"{model}-{i:03d}-label{int(label)}-drawn{predictions[-1]}.png"
                    failures.mkdir(parents=True, exist_ok=True)
                    (failures / name).write_bytes(charts.png_gray(side_by_side(image, seen)))
            correct = sum(p == int(y) for p, y in zip(predictions, labels, strict=True))
            results[model] = {
                "digits": len(images),
                "drawn_accuracy": correct / len(images),
                "method": method,
                "predictions": predictions,
            }
        browser.close()
    return results


def side_by_side(*images: np.ndarray, zoom: int = 8) -> np.ndarray:
    gap = np.full((28, 2), 128, np.uint8)
    row = np.hstack([x for img in images for x in (img.astype(np.uint8), gap)][:-1])
    return np.kron(row, np.ones((zoom, zoom), np.uint8))


def offline(args, cfg, mnist, models: list[str]) -> dict[str, dict]:
    """Validation digits (the last val_size training images), drawn in Python, not in a page."""
    from mnist_webgpu import layout

    pen = pen_width(args.site)
    split = layout.split(cfg.train)
    val = slice(split.n_train, split.n_train + split.n_val)
    rng = np.random.default_rng(0)
    pick = rng.choice(split.n_val, args.count, replace=False)
    images, labels = mnist.train_x[val][pick], mnist.train_y[val][pick].astype(int)
    seen = simulate(images, args.method, pen)
    results = {}
    for model in models:
        drawn = site_logits(args.site, model, seen).argmax(1)
        direct = site_logits(args.site, model, images.astype(np.float32) / 255).argmax(1)
        results[model] = {
            "digits": len(images),
            "drawn_accuracy": float((drawn == labels).mean()),
            "val_accuracy": float((direct == labels).mean()),
            "method": args.method,
            "offline": True,
        }
    return results


def main() -> None:
    from mnist_webgpu import config, data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("dist"))
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--models", default="")
    parser.add_argument("--method", choices=METHODS, default=DEFAULT_METHOD)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--failures", type=Path, help="write a PNG per misclassified digit here")
    parser.add_argument(
        "--offline", action="store_true", help="validation digits, Python stand-in of the page"
    )
    args = parser.parse_args()
    cfg = config.load()
    mnist = data.load(cfg.cache_dir())
    models = args.models.split(",") if args.models else list(cfg.model_names)
    if args.offline:
        results = offline(args, cfg, mnist, models)
        print(json.dumps(results) if args.json else "\n".join(f"{m}: {r}" for m, r in results.items()))
        return
    rng = np.random.default_rng(0)
    pick = rng.choice(len(mnist.test_y), args.count, replace=False)
    results = measure(
        args.site, mnist.test_x[pick], mnist.test_y[pick], models, method=args.method, failures=args.failures
    )
    for model, r in results.items():
        metrics = json.loads((Path("build/models") / model / "metrics.json").read_text())
        r["test_accuracy"] = metrics["test_accuracy"]
        # the models' accuracy on these very digits, fed directly (tinygrad, the site's weights)
        direct = site_logits(args.site, model, mnist.test_x[pick].astype(np.float32) / 255).argmax(1)
        r["direct_accuracy"] = float((direct == mnist.test_y[pick]).mean())
    if args.json:
        print(json.dumps(results))
        return
    for model, r in results.items():
        gap = 100 * (r["test_accuracy"] - r["drawn_accuracy"])
        print(
            f"{model} ({args.method}): drawn {r['drawn_accuracy']:.2%} on {r['digits']} test digits "
            f"(same digits fed directly {r['direct_accuracy']:.2%}; test accuracy "
            f"{r['test_accuracy']:.2%}, gap {gap:.1f} pts)"
        )


if __name__ == "__main__":
    main()
