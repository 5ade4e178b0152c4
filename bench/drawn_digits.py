"""Draw MNIST test digits onto the app's canvas with pointer events; measure what it predicts.

Each digit is thinned to a one-pixel skeleton and retraced with the app's own pen, the way
a person would draw it, so the page's whole pipeline (stroke rendering, crop, scale,
centre of mass, model) is exercised. The figure to compare is the model's accuracy on the
same digits fed directly.

    python bench/drawn_digits.py [--site dist] [--count 300] [--models mlp,cnn]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from browser_env import CHROMIUM, CHROMIUM_ARGS, serve  # noqa: E402

NEIGHBOURS = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]


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


def strokes(image: np.ndarray) -> list[list[list[float]]]:
    """Pen strokes (in fractions of the canvas) joining neighbouring skeleton pixels."""
    skel = skeleton(image)
    points = {(int(r), int(c)) for r, c in zip(*np.nonzero(skel), strict=True)}

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


DRAW_JS = """
async ([segments]) => {
  const canvas = document.querySelector('[data-testid="canvas"]');
  const rect = canvas.getBoundingClientRect();
  const fire = (type, [fx, fy]) => canvas.dispatchEvent(new PointerEvent(type, {
    pointerId: 7, pointerType: "pen", isPrimary: true, bubbles: true, cancelable: true,
    buttons: type === "pointerup" ? 0 : 1, pressure: type === "pointerup" ? 0 : 0.5,
    clientX: rect.left + fx * rect.width, clientY: rect.top + fy * rect.height,
  }));
  for (const [a, b] of segments) {
    fire("pointerdown", a);
    fire("pointermove", b);
    fire("pointerup", b);
  }
}
"""


def predict_drawn(page, image: np.ndarray) -> int | None:
    page.get_by_test_id("clear").click()
    page.evaluate(DRAW_JS, [strokes(image)])
    page.wait_for_selector("[data-settled=true]", timeout=30000)
    last = page.get_by_test_id("prediction").inner_text().strip()
    return int(last) if last else None


def measure(
    site: Path, images: np.ndarray, labels: np.ndarray, models: list[str], on_page=None
) -> dict[str, dict]:
    from playwright.sync_api import sync_playwright

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
            predictions = [predict_drawn(page, img) for img in images]
            correct = sum(p == int(y) for p, y in zip(predictions, labels, strict=True))
            results[model] = {"digits": len(images), "drawn_accuracy": correct / len(images)}
        browser.close()
    return results


def main() -> None:
    from mnist_webgpu import config, data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site", type=Path, default=Path("dist"))
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--models", default="")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cfg = config.load()
    mnist = data.load(cfg.cache_dir())
    rng = np.random.default_rng(0)
    pick = rng.choice(len(mnist.test_y), args.count, replace=False)
    models = args.models.split(",") if args.models else list(cfg.model_names)
    results = measure(args.site, mnist.test_x[pick], mnist.test_y[pick], models)
    for model, r in results.items():
        metrics = json.loads((Path("build/models") / model / "metrics.json").read_text())
        r["test_accuracy"] = metrics["test_accuracy"]
    if args.json:
        print(json.dumps(results))
        return
    for model, r in results.items():
        gap = 100 * (r["test_accuracy"] - r["drawn_accuracy"])
        print(
            f"{model}: drawn {r['drawn_accuracy']:.2%} on {r['digits']} test digits "
            f"(test accuracy {r['test_accuracy']:.2%}, gap {gap:.1f} pts)"
        )


if __name__ == "__main__":
    main()
