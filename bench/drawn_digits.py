"""Draw digits onto the app's pad with pointer events, the way people draw; count what it reads.

The headline figure: each digit's centre line (its skeleton, traced into polylines) drawn
as pen strokes with pointer events through the real page (its pad, preprocessing and
runtime), in four conditions (CONDITIONS):

  centred   the middle of the pad, 50-80% of its height, upright;
  anywhere  anywhere on the pad, 30-95% of its height, tilted up to 12 degrees;
  small     anywhere, 15-30% of the pad's height, upright;
  pen       centred and 50-80% high like `centred`, with a pen much thinner (2.5% of the
            pad) or much thicker (20%) than the app's 10%, alternately.

The secondary figure, `--fidelity`: each digit's ink filled row by row as large as the pad
takes (horizontal strokes over the ink eroded by the pen's radius, plus the skeleton where
the ink is thinner than the pen): it reproduces MNIST's pixels, so it measures how faithful
the page's preprocessing is, not how people draw.

Digits come from the validation split (the last val_size training images) unless `--test`:
develop on validation, draw test digits once for the figures to report.

    python bench/drawn_digits.py [--site dist] [--count 300] [--models mlp,cnn] [--test]
        [--conditions centred,anywhere,small,pen] [--fidelity] [--json] [--failures DIR]
        [--offline] [--hands N]
    python bench/drawn_digits.py --pen N [--pen-conditions written,small,anywhere] [--offline]

--pen N replays N pen digits (0: all) of real people, the validation writers of UCI pendigits
([train] pen_val_writers: never trained on), through the page with pointer events: as written
(centred, 45-80% of the pad), small (15-30%, anywhere) and anywhere (30-95%, tilted up to 12
degrees); per model and condition: accuracy, declined, each writer's and each digit's.

--hands N draws N digits written in hands unlike MNIST's (bench/hands.py: 30 styles, the
digits and styles in turn) instead of the conditions (name --conditions to draw both),
through the page or, with --offline, the stand-ins: accuracy, share declined, per style.

--failures DIR writes, per misclassified digit, a PNG: the MNIST digit and what the model
saw (the page's 28x28 preview). --offline runs no browser: Python stand-ins of the pad and
the page's preprocessing (mnist_webgpu.drawings.preprocess.render_strokes, the reference of the page's
vector rendering, deskew included) and tinygrad on the site's weights.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import re
import sys
from pathlib import Path

import hands  # bench/hands.py, beside this script
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # the package; the kits (tests/kits)

from kits.browser_env import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402

from mnist_webgpu.core.layout import SiteModel  # noqa: E402
from mnist_webgpu.data.split import mnist_split  # noqa: E402
from mnist_webgpu.drawings import (  # noqa: E402
    negatives,
    pad,
    preprocess,  # noqa: E402
)
from mnist_webgpu.drawings.pen import Point, graph, skeleton_points, trace  # noqa: E402
from mnist_webgpu.site import charts  # noqa: E402

CONDITIONS = pad.CONDITIONS
FIDELITY = "rows"
INK_SIZE = 280  # the pad's ink canvas (site_src/draw.js): the grid the rows method fills
MARGIN = pad.MARGIN
THIN_PEN, THICK_PEN = pad.THIN_PEN, pad.THICK_PEN
MIN_EXTENT = 0.05  # site_src/verdict.js: smaller drawings are declined ("Draw bigger")


Stroke = list[list[float]]


def fidelity_strokes(image: np.ndarray, pen_width: float) -> list[Stroke]:
    return row_strokes(image, pen_width)


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
    scale = room / (max(np.ptp(ys), np.ptp(xs)) + 1)
    for _ in range(4):  # shrink until the pen's outline, not just its centre, fits the pad
        strokes = _rows_at(img, points, centre, scale, pen)
        span = max(np.ptp([p[i] for s in strokes for p in s]) for i in (0, 1)) + pen
        if span <= room + 1e-9:
            break
        scale *= (room - pen) / (span - pen)
    xy = np.array([p for s in strokes for p in s])
    shift = 0.5 - (xy.min(0) + xy.max(0)) / 2
    return [[[x + shift[0], y + shift[1]] for x, y in s] for s in strokes]


def side_by_side(*images: np.ndarray, zoom: int = 8) -> np.ndarray:
    gap = np.full((28, 2), 128, np.uint8)
    row = np.hstack([x for img in images for x in (img.astype(np.uint8), gap)][:-1])
    return np.kron(row, np.ones((zoom, zoom), np.uint8))


def pen_width(site: Path) -> float:
    """The app's PEN_WIDTH, read from the site's own draw.js (site_src's when not built)."""
    found = sorted(site.glob("assets/draw.*.js")) or [ROOT / "site_src" / "draw.js"]
    return float(re.search(r"PEN_WIDTH\s*=\s*([0-9.]+)", found[0].read_text()).group(1))


def drawings(
    images: np.ndarray, condition: str, app_pen: float, seed: int = 0
) -> list[tuple[list[Stroke], float]]:
    """(strokes, pen width) per digit for one condition; the same seed, the same drawings."""
    rng = np.random.default_rng([seed, CONDITIONS.index(condition) if condition in CONDITIONS else 9])
    out = []
    for image in images:
        if condition == FIDELITY:
            out.append((fidelity_strokes(image, app_pen), app_pen))
        else:
            where = pad.placement(condition, rng, app_pen)
            out.append((pad.digit_strokes(image, where), where["pen"]))
    return out


# --- a Python stand-in of the pad and the page's preprocessing ---------------------------


def too_small(strokes_: list[Stroke], width: float) -> bool:
    """The page's size rule (site_src/verdict.js): a drawing under MIN_EXTENT of the pad."""
    got = preprocess.render_strokes([{"tool": "pen", "width": width, "points": s} for s in strokes_])
    return got is None or got[1] < MIN_EXTENT


def simulate(drawn: list[tuple[list[Stroke], float]]) -> np.ndarray:
    """What the page's model would see for each drawing: the page's rendering of the pointer
    paths, in Python (preprocess.render_strokes)."""
    out = np.zeros((len(drawn), 28, 28), np.float32)
    for i, (strokes_, width) in enumerate(drawn):
        got = preprocess.render_strokes([{"tool": "pen", "width": width, "points": s} for s in strokes_])
        if got is not None:
            out[i] = got[0]
    return out


def site_logits(site: Path, model: str, pixels: np.ndarray) -> np.ndarray:
    """tinygrad on the CPU with the weights the site's page loads (its manifest's default form)."""
    from onnx_model import expanded_weights
    from tinygrad import Tensor

    from mnist_webgpu.export import webgpu as export
    from mnist_webgpu.models import zoo as models

    model_dir = site / SiteModel(model).folder
    manifest = json.loads((site / SiteModel(model).manifest).read_text())
    weights = expanded_weights(model_dir, manifest.get("default_form", "f32"))
    arch, widths = manifest["model"]["arch"], tuple(manifest["model"]["widths"])
    net = models.REGISTRY[arch](widths, manifest["output"]["shape"][-1])
    export.set_weights(net, weights)
    return np.concatenate(
        [
            net(Tensor(pixels[i : i + 500, None].astype(np.float32))).numpy()
            for i in range(0, len(pixels), 500)
        ]
    )


# --- the page ---------------------------------------------------------------------------------

DRAW_JS = """
async ([strokes, pen]) => {
  const canvas = document.querySelector('[data-testid="canvas"]');
  canvas.dataset.penWidth = String(pen);
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


@contextlib.contextmanager
def app_page(site: Path, on_page=None, query: str = ""):
    """The site's app (`query`: its URL parameters) in headless Chromium, served on 127.0.0.1,
    ready to be drawn on."""
    from playwright.sync_api import sync_playwright

    with serve(site) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        if on_page:
            on_page(page)
        page.goto(url + query)
        page.wait_for_selector("[data-ready=true]", timeout=30000)
        page.get_by_test_id("canvas").scroll_into_view_if_needed()
        try:
            yield page
        finally:
            browser.close()


def use_model(page, model: str) -> None:
    page.get_by_test_id("model-select").select_option(model)
    page.wait_for_selector("[data-ready=true]", timeout=30000)


def predict_drawn(page, strokes_: list[Stroke], width: float) -> int | None:
    page.get_by_test_id("clear").click()
    page.evaluate(DRAW_JS, [strokes_, width])
    page.wait_for_selector("[data-settled=true]", timeout=30000)
    last = page.get_by_test_id("prediction").inner_text().strip()
    return int(last) if last.isdigit() else None


def measure(
    site: Path,
    images: np.ndarray,
    labels: np.ndarray,
    models: list[str],
    conditions: list[str],
    on_page=None,
    failures: Path | None = None,
    nondigits: list[tuple[list[Stroke], str]] = (),
) -> dict[str, dict]:
    """{model: {condition: {"digits", "accuracy", "declined", "predictions"}}} through the real page.

    With `nondigits` ((strokes, kind) drawings that are no digit), also {model: {"nondigits":
    {"drawings", "declined", "by_kind"}}}: how many the page answers with "?".
    """
    app_pen = pen_width(site)
    drawn = {c: drawings(images, c, app_pen) for c in conditions}
    results: dict[str, dict] = {}
    with app_page(site, on_page) as page:
        for model in models:
            use_model(page, model)
            results[model] = {}
            for condition in conditions:
                predictions = []
                for i, ((strokes_, width), image, label) in enumerate(
                    zip(drawn[condition], images, labels, strict=True)
                ):
                    predictions.append(predict_drawn(page, strokes_, width))
                    if failures and predictions[-1] != int(label):
                        seen = np.array(page.evaluate(PREVIEW_JS), np.uint8).reshape(28, 28)
                        name = f"{model}-{condition}-{i:03d}-label{int(label)}-drawn{predictions[-1]}.png"
                        failures.mkdir(parents=True, exist_ok=True)
                        (failures / name).write_bytes(charts.png_gray(side_by_side(image, seen)))
                correct = sum(p == int(y) for p, y in zip(predictions, labels, strict=True))
                results[model][condition] = {
                    "digits": len(images),
                    "accuracy": correct / len(images),
                    "declined": sum(p is None for p in predictions) / len(images),
                    "predictions": predictions,
                }
            if nondigits:
                answers = [predict_drawn(page, strokes_, app_pen) for strokes_, _ in nondigits]
                results[model]["nondigits"] = declined_summary(answers, [kind for _, kind in nondigits])
    return results


# --- real people's pen digits (the validation writers) -------------------------------------

# as written: centred, 45-80% of the pad, upright; small: 15-30%, anywhere; anywhere: 30-95%,
# anywhere, tilted up to 12 degrees (the placements of the drawn-digit conditions)
PEN_CONDITIONS = {"written": "centred", "small": "small", "anywhere": "anywhere"}


def pen_digits(cfg, count: int = 0, seed: int = 0) -> list:
    """The validation writers' pen digits ([train] pen_val_writers): all of them, or a seeded
    pick of `count` in their file order. Never a training writer's."""
    from mnist_webgpu.data import pendigits

    _, held = pendigits.split(pendigits.load(), cfg.train.pen_val_writers)
    if count and count < len(held):
        keep = np.sort(np.random.default_rng([seed, 26]).choice(len(held), count, replace=False))
        held = [held[i] for i in keep]
    return held


def pen_drawings(
    digits: list, condition: str, app_pen: float, seed: int = 0
) -> list[tuple[list[Stroke], float]]:
    """(strokes, pen width) per pen digit, placed on the pad as `condition` says."""
    rng = np.random.default_rng([seed, 27, list(PEN_CONDITIONS).index(condition)])
    out = []
    for d in digits:
        where = pad.placement(PEN_CONDITIONS[condition], rng, app_pen)
        if condition == "written":
            where["size"] = rng.uniform(0.45, 0.8)
        out.append((pad.place(list(d.strokes), where), app_pen))
    return out


def pen_summary(said: list[int | None], digits: list) -> dict:
    """Accuracy, declined, and the accuracy of each writer and each digit."""
    right = np.array([a == d.label for a, d in zip(said, digits, strict=True)])
    writers = np.array([d.writer for d in digits])
    labels = np.array([d.label for d in digits])
    by_writer = {str(w): float(right[writers == w].mean()) for w in sorted(set(writers.tolist()))}
    return {
        "digits": len(digits),
        "accuracy": float(right.mean()),
        "declined": sum(a is None for a in said) / len(said),
        "worst_writer": min(by_writer, key=by_writer.get),
        "worst_accuracy": min(by_writer.values()),
        "by_writer": by_writer,
        "by_digit": {str(k): float(right[labels == k].mean()) for k in range(10) if (labels == k).any()},
        "predictions": said,
    }


def measure_pen(site: Path, digits: list, models: list[str], conditions: list[str], query: str = "") -> dict:
    """{model: {condition: pen_summary}}: each pen digit replayed with pointer events through
    the real page (`query`: its URL parameters, such as ?backend=cpu)."""
    app_pen = pen_width(site)
    drawn = {c: pen_drawings(digits, c, app_pen) for c in conditions}
    results: dict[str, dict] = {}
    with app_page(site, query=query) as page:
        for model in models:
            use_model(page, model)
            results[model] = {
                c: pen_summary([predict_drawn(page, st, w) for st, w in drawn[c]], digits) for c in conditions
            }
    return results


def offline_answers(site: Path, models: list[str], drawn: list[tuple[list[Stroke], float]]) -> dict:
    """{model: answers}: what the Python stand-ins of the page say of each (strokes, pen width)
    drawing, the digit or None where its size rule or its "not a digit" rule declines it."""
    from mnist_webgpu.train import verdict

    seen = simulate(drawn)
    small = [too_small(st, w) for st, w in drawn]
    answers = {}
    for model in models:
        got = verdict.answers(site_logits(site, model, seen), site_rule(site, model))
        answers[model] = [None if sm or g < 0 else int(g) for g, sm in zip(got, small, strict=True)]
    return answers


def offline_pen(site: Path, digits: list, models: list[str], conditions: list[str]) -> dict:
    """As measure_pen(), with the Python stand-ins of the page (its size and decline rules)."""
    app_pen = pen_width(site)
    results: dict[str, dict] = {m: {} for m in models}
    for c in conditions:
        for model, said in offline_answers(site, models, pen_drawings(digits, c, app_pen)).items():
            results[model][c] = pen_summary(said, digits)
    return results


def nondigit_drawings(images: np.ndarray, count: int, seed: int = 0) -> list[tuple[list[Stroke], str]]:
    """`count` generated drawings that are no digit, the kinds in turn; pairs and fragments
    are made of `images` (validation digits: never the test set)."""

    rng = np.random.default_rng([seed, 99])
    return [negatives.nth(i, rng, images) for i in range(count)]


def declined_summary(answers: list[int | None], kinds: list[str]) -> dict:
    by_kind = {
        k: [a is None for a, kk in zip(answers, kinds, strict=True) if kk == k] for k in sorted(set(kinds))
    }
    return {
        "drawings": len(answers),
        "declined": sum(a is None for a in answers) / len(answers),
        "by_kind": {k: sum(v) / len(v) for k, v in by_kind.items()},
    }


def pick_digits(cfg, mnist, count: int, test: bool, seed: int = 0) -> tuple[np.ndarray, np.ndarray, str]:
    """`count` digits, a fixed seeded pick: validation digits unless `test`."""

    rng = np.random.default_rng(seed)
    if test:
        pick = rng.choice(len(mnist.test_y), count, replace=False)
        return mnist.test_x[pick], mnist.test_y[pick].astype(int), "test"
    split = mnist_split(cfg.train)
    pick = split.n_train + rng.choice(split.n_val, count, replace=False)
    return mnist.train_x[pick], mnist.train_y[pick].astype(int), "validation"


def site_rule(site: Path, model: str):
    """The "not a digit" rule the site's manifest carries for `model` (None: ten outputs)."""
    from mnist_webgpu.core import records

    rule = json.loads((site / SiteModel(model).manifest).read_text()).get("decline")
    return None if rule is None else records.Decline(**rule)


def offline(site: Path, images, labels, models, conditions, nondigits=()) -> dict[str, dict]:
    """As measure(), with the Python stand-ins of the page: its size rule (verdict.js) and its
    model's "not a digit" rule (mnist_webgpu.train.verdict, the page's arithmetic)."""
    from mnist_webgpu.train import verdict

    app_pen = pen_width(site)
    results: dict[str, dict] = {m: {} for m in models}
    for condition in conditions:
        drawn_ = drawings(images, condition, app_pen)
        seen = simulate(drawn_)
        small = np.array([too_small(st, w) for st, w in drawn_])
        for model in models:
            answers = verdict.answers(site_logits(site, model, seen), site_rule(site, model))
            said = np.where(small, -1, answers)
            results[model][condition] = {
                "digits": len(images),
                "accuracy": float((said == labels).mean()),
                "declined": float((said == -1).mean()),
            }
    if nondigits:
        seen = simulate([(st, app_pen) for st, _ in nondigits])
        small = np.array([too_small(st, app_pen) for st, _ in nondigits])
        for model in models:
            refused = small | verdict.declined(site_logits(site, model, seen), site_rule(site, model))
            answers = [None if r else 0 for r in refused]
            results[model]["nondigits"] = declined_summary(answers, [k for _, k in nondigits])
    for model in models:
        results[model]["direct"] = direct(site, model, images, labels)
    return results


def direct(site: Path, model: str, images: np.ndarray, labels: np.ndarray) -> dict:
    """The digits themselves fed to the site's model, as it sees MNIST's digits (deskewed):
    what the drawn figures are measured against."""
    said = site_logits(site, model, preprocess.upright(images).astype(np.float32) / 255)[:, :10].argmax(1)
    return {"digits": len(images), "accuracy": float((said == labels).mean())}


def measure_hands(site: Path, models: list[str], count: int, seed: int = 0) -> dict[str, dict]:
    """{model: summary} with every drawing of bench/hands.py drawn through the real page (pointer events)."""
    pen = pen_width(site)
    drawn = hands.drawings(count, pen, seed)
    results = {}
    with app_page(site) as page:
        for model in models:
            use_model(page, model)
            results[model] = hands.summary([predict_drawn(page, s, pen) for s, _, _ in drawn], drawn)
    return results


def offline_hands(site: Path, models: list[str], count: int, seed: int = 0) -> dict[str, dict]:
    """As measure_hands(), with the Python stand-ins of the page (its size and decline rules)."""
    pen = pen_width(site)
    drawn = hands.drawings(count, pen, seed)
    answers = offline_answers(site, models, [(s, pen) for s, _, _ in drawn])
    return {model: hands.summary(said, drawn) for model, said in answers.items()}


def main() -> None:
    from mnist_webgpu.core import config
    from mnist_webgpu.data import mnist as data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("dist"))
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--models", default="")
    parser.add_argument(
        "--conditions", default=None, help=f"default {','.join(CONDITIONS)} (none with --hands)"
    )
    parser.add_argument("--fidelity", action="store_true", help="also the row-fill preprocessing figure")
    parser.add_argument("--test", action="store_true", help="test digits (for the final figures only)")
    parser.add_argument("--nondigits", type=int, default=0, help="also this many generated non-digits")
    parser.add_argument(
        "--hands", type=int, default=0, help="digits in hands unlike MNIST's (bench/hands.py)"
    )
    parser.add_argument(
        "--pen",
        type=int,
        default=-1,
        help="real pen digits of the validation writers instead of the conditions (0 = all of them)",
    )
    parser.add_argument("--pen-conditions", default=",".join(PEN_CONDITIONS), help="with --pen")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--failures", type=Path, help="write a PNG per misclassified digit here")
    parser.add_argument("--offline", action="store_true", help="Python stand-ins of the pad and the page")
    args = parser.parse_args()
    if args.hands < 0:
        parser.error(f"--hands: {args.hands} is not a number of drawings (0 or more)")
    if args.conditions is None:
        args.conditions = "" if args.hands else ",".join(CONDITIONS)
    conditions = [c for c in args.conditions.split(",") if c]
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        parser.error(f"--conditions: unknown {', '.join(unknown)} (known: {', '.join(CONDITIONS)})")
    conditions += [FIDELITY] if args.fidelity else []
    cfg = config.load()
    models = args.models.split(",") if args.models else list(cfg.model_names)
    if args.pen >= 0:
        pen_main(args, cfg, models)
        return
    mnist = data.load(cfg.cache_dir())
    images, labels, split = pick_digits(cfg, mnist, args.count if conditions else 0, args.test)
    # pairs and fragments come from validation digits, whatever the digits drawn
    val_images = pick_digits(cfg, mnist, 500, False, seed=7)[0]
    nondigits = nondigit_drawings(val_images, args.nondigits) if args.nondigits else []
    if not conditions and not nondigits:
        results = {m: {} for m in models}
    elif args.offline:
        results = offline(args.site, images, labels, models, conditions, nondigits)
    else:
        results = measure(
            args.site, images, labels, models, conditions, failures=args.failures, nondigits=nondigits
        )
        for model in models:
            results[model]["direct"] = direct(args.site, model, images, labels)
    if args.hands:
        found = (offline_hands if args.offline else measure_hands)(args.site, models, args.hands)
        for model in models:
            results[model]["hands"] = found[model]
    if args.json:
        print(json.dumps({"split": split, "offline": args.offline, "results": results}))
        return
    how = "offline" if args.offline else "through the page"
    print(
        f"{len(images)} {split} digits per condition" if conditions else f"{args.hands} hand-styled digits",
        f"({how})",
    )
    for model, r in results.items():
        shown = [
            f"{c} {v['accuracy']:.2%}" + (f" ({v['declined']:.1%} declined)" if v.get("declined") else "")
            for c, v in r.items()
            if "accuracy" in v and c != "hands"
        ]
        if "hands" in r:
            h = r["hands"]
            styles = " ".join(f"{k} {v:.0%}" for k, v in h["by_style"].items())
            shown.append(
                f"hands ({h['drawings']}) {h['accuracy']:.2%}, declined {h['declined']:.1%} [{styles}]"
            )
        if "nondigits" in r:
            shown.append(f"non-digits declined {r['nondigits']['declined']:.1%} {r['nondigits']['by_kind']}")
        print(f"{model}: " + ", ".join(shown))


def pen_main(args, cfg, models: list[str]) -> None:
    conditions = [c for c in args.pen_conditions.split(",") if c]
    unknown = [c for c in conditions if c not in PEN_CONDITIONS]
    if unknown:
        sys.exit(f"--pen-conditions: unknown {', '.join(unknown)} (known: {', '.join(PEN_CONDITIONS)})")
    digits = pen_digits(cfg, args.pen)
    run = offline_pen if args.offline else measure_pen
    results = run(args.site, digits, models, conditions)
    if args.json:
        print(json.dumps({"split": "validation writers", "offline": args.offline, "results": results}))
        return
    writers = sorted({d.writer for d in digits})
    how = "offline" if args.offline else "through the page"
    print(f"{len(digits)} pen digits of writers {', '.join(map(str, writers))} per condition ({how})")
    for model, r in results.items():
        for c, v in r.items():
            worst = f"worst writer {v['worst_writer']} {v['worst_accuracy']:.1%}"
            digit = " ".join(f"{k}:{a:.0%}" for k, a in v["by_digit"].items())
            print(f"{model} {c}: {v['accuracy']:.2%} ({v['declined']:.1%} declined), {worst}; {digit}")


if __name__ == "__main__":
    main()
