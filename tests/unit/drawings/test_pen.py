"""mnist_webgpu.drawings.pen (skeletons, pen redraws for training) and .strokes (the page's vector rendering).

site_src/preprocess.js's preprocessStrokes runs in node here, against the Python reference
on the same strokes; bench/drawn_digits.py supplies real digits' centre lines as strokes.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from kits.projectkit import ROOT
from kits.sitekit import center_of_mass

from mnist_webgpu.drawings import pad as drawings
from mnist_webgpu.drawings import pen, preprocess

RUN_JS = """
import { preprocessStrokes } from "./preprocess.mjs";
const cases = JSON.parse(await new Promise((resolve) => {
  let s = ""; process.stdin.on("data", (d) => (s += d)); process.stdin.on("end", () => resolve(s));
}));
console.log(JSON.stringify(cases.map((c) => {
  const r = preprocessStrokes(c);
  return { pixels: Array.from(r.pixels), empty: r.empty, extent: r.extent };
})));
"""


def run_js(tmp_path, cases: list[list[dict]]) -> list[dict]:
    if shutil.which("node") is None:
        pytest.fail("node is not installed")
    shutil.copyfile(ROOT / "site_src" / "preprocess.js", tmp_path / "preprocess.mjs")
    (tmp_path / "run.mjs").write_text(RUN_JS)
    out = subprocess.run(
        ["node", str(tmp_path / "run.mjs")],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def as_pen(strokes: list, width: float = 0.1) -> list[dict]:
    return [{"tool": "pen", "width": width, "points": s} for s in strokes]


def digit_strokes(image: np.ndarray, size: float, centre=(0.5, 0.5)) -> list[dict]:
    where = {"size": size, "tilt": 0.0, "anywhere": False, "u": np.zeros(2), "pen": 0.1}
    drawn = drawings.digit_strokes(image, where)
    return as_pen([[[x + centre[0] - 0.5, y + centre[1] - 0.5] for x, y in s] for s in drawn])


def test_page_matches_python_reference(tmp_path, mnist):
    cases = [
        digit_strokes(img, size)
        for img, size in zip(mnist.train_x[:6], (0.2, 0.5, 0.9, 0.3, 0.7, 0.15), strict=True)
    ]
    cases.append(digit_strokes(mnist.train_x[6], 0.4, centre=(0.25, 0.7)))
    tap = as_pen([[[0.3, 0.4]]])
    cases.append(tap)
    # a bar half rubbed out: the eraser cuts, and the box follows the visible ink only
    bar = as_pen([[[0.5, 0.1], [0.5, 0.9]]])
    cases.append([*bar, {"tool": "eraser", "width": 0.22, "points": [[0.5, 0.75], [0.5, 0.95]]}])
    cases.append([*bar, {"tool": "eraser", "width": 0.22, "points": [[0.2, 0.5], [0.8, 0.5]]}])
    cases.append([{"tool": "eraser", "width": 0.22, "points": [[0.5, 0.5]]}])
    got = run_js(tmp_path, cases)
    for k, (case, js) in enumerate(zip(cases, got, strict=True)):
        ref = preprocess.render_strokes(case)
        if ref is None:
            assert js["empty"], k
            continue
        assert not js["empty"], k
        assert np.abs(np.array(js["pixels"]).reshape(28, 28) - ref[0]).max() <= 1e-5, k
        assert js["extent"] == pytest.approx(ref[1]), k
    erased = preprocess.render_strokes(cases[-3])
    assert erased[1] == pytest.approx(0.8 - 0.1 * 2 - 0.0, abs=0.07), "the rubbed-out end leaves the box"
    cut = preprocess.render_strokes(cases[-2])[0]
    assert cut[:, 12:16].sum(1).min() == 0, "the eraser's cut goes through the bar"


def test_same_strokes_at_any_size_give_the_same_image(mnist):
    """20%, 50% and 90% of the pad: the model sees the same 28x28 digit, strokes alike."""
    for image in mnist.train_x[10:20]:
        seen = []
        for size in (0.2, 0.5, 0.9):
            drawn = digit_strokes(image, size)
            # pointer positions come in whole pixels of a 280 px pad
            quantized = [
                {**s, "points": (np.round(np.array(s["points"]) * 280) / 280).tolist()} for s in drawn
            ]
            seen.append(preprocess.render_strokes(quantized)[0])
        for other in seen[1:]:
            assert np.abs(other - seen[2]).mean() <= 0.02, np.abs(other - seen[2]).mean()
            assert abs(other.sum() - seen[2].sum()) <= 0.05 * seen[2].sum()


def test_stroke_width_is_the_mnist_like_width_whatever_the_pen():
    bar = [[[0.5, 0.2], [0.5, 0.8]]]
    for width in (0.025, 0.1, 0.2):
        img = preprocess.render_strokes(as_pen(bar, width))[0]
        rows = img[6:22]
        assert rows.sum(1).mean() == pytest.approx(preprocess.STROKE, abs=0.05)
        ys = np.nonzero(img.sum(1) > 0.05)[0]
        assert ys[-1] - ys[0] + 1 == pytest.approx(preprocess.BOX, abs=1), (
            "the ink's long side fills the 20 px box"
        )


def test_centre_of_mass_is_at_the_centre(mnist):
    for image in mnist.train_x[20:25]:
        img = preprocess.render_strokes(digit_strokes(image, 0.6, centre=(0.3, 0.6)))[0]
        assert center_of_mass(img) == pytest.approx((14, 14), abs=0.5)


def test_skeletons_are_thin_centre_lines(mnist):
    images = mnist.train_x[:200]
    skel = pen.skeletons(images)
    assert skel.shape == images.shape and skel.dtype == bool
    assert not (skel & (images < pen.INK_THRESHOLD)).any(), "the skeleton lies on the ink"
    blocks = skel[:, :-1, :-1] & skel[:, 1:, :-1] & skel[:, :-1, 1:] & skel[:, 1:, 1:]
    # one pixel wide: Zhang-Suen leaves a rare 2x2 block, no more
    assert blocks.sum() <= 0.01 * skel.sum(), blocks.sum()
    assert skel.sum() <= 0.6 * (images >= pen.INK_THRESHOLD).sum()
    assert (skel.sum((1, 2)) >= 8).all()
    y, x = np.mgrid[0:28, 0:28] + 0.5
    r = np.hypot(x - 14, y - 14)
    ring = (((r <= 9) & (r >= 6)) * 255).astype(np.uint8)
    paths = pen.trace(pen.graph(pen.skeleton_points(ring)))
    assert len(paths) == 1 and paths[0][0] == paths[0][-1], "a ring thins to one closed loop"


def brute_raster(strokes_: list[dict], scale: float, ox: float, oy: float, stroke: float) -> np.ndarray:
    """preprocess._raster the slow way: every supersample cell against every segment."""
    n = preprocess.SIZE * preprocess.SUPERSAMPLE
    c = (np.arange(n) + 0.5) / preprocess.SUPERSAMPLE
    py, px = np.meshgrid(c, c, indexing="ij")
    ink = np.zeros((n, n), bool)
    for s in strokes_:
        pts = (np.asarray(s["points"], np.float64) - [ox, oy]) * scale
        r = stroke / 2 if s.get("tool", "pen") == "pen" else s["width"] * scale / 2
        inside = np.zeros((n, n), bool)
        for a, b in zip(pts[:-1], pts[1:], strict=True) if len(pts) > 1 else [(pts[0], pts[0])]:
            d = b - a
            dd = float(d @ d)
            along = ((px - a[0]) * d[0] + (py - a[1]) * d[1]) / dd if dd else np.zeros_like(px)
            t = np.clip(along, 0, 1)
            inside |= (px - a[0] - t * d[0]) ** 2 + (py - a[1] - t * d[1]) ** 2 <= r * r
        ink = ink | inside if s.get("tool", "pen") == "pen" else ink & ~inside
    return ink.reshape(preprocess.SIZE, preprocess.SUPERSAMPLE, preprocess.SIZE, preprocess.SUPERSAMPLE).mean(
        axis=(1, 3)
    )


def test_the_windowed_raster_is_exactly_the_capsule_union():
    rng = np.random.default_rng(11)
    cases = [
        [{"tool": "pen", "points": [[0.1, 0.1], [0.9, 0.85]]}],  # one long segment, cut into pieces
        [{"tool": "pen", "points": [[0.5, 0.5]]}],  # a tap
        [{"tool": "pen", "points": rng.uniform(0.05, 0.95, (30, 2)).tolist()}],
        [
            {"tool": "pen", "points": rng.uniform(0.1, 0.9, (12, 2)).tolist()},
            {"tool": "eraser", "width": 0.08, "points": [[0.2, 0.8], [0.8, 0.2]]},
            {"tool": "pen", "points": [[0.3, 0.3], [0.31, 0.7]]},
        ],
        [{"tool": "pen", "points": [[-0.2, 0.5], [1.3, 0.52]]}],  # off the image at both ends
    ]
    for case in cases:
        for scale, ox, oy in ((20.0, 0.0, 0.0), (35.5, 0.1, -0.2), (180.0, 0.4, 0.35)):
            got = preprocess._raster(case, scale, ox, oy, preprocess.STROKE)
            assert np.array_equal(got, brute_raster(case, scale, ox, oy, preprocess.STROKE)), (case, scale)


# --- deskew: a digit's slant is sheared away, on the page and for MNIST's digits alike ---


def slant_of(image: np.ndarray) -> float:
    """The ink's covariance of x and y over its variance in y: the shear deskew removes."""
    gy, gx = np.mgrid[0:28, 0:28]
    cy, cx = center_of_mass(image)
    return float((image * (gx - cx) * (gy - cy)).sum() / (image * (gy - cy) ** 2).sum())


def sheared(drawing: list[dict], k: float) -> list[dict]:
    """The drawing slanted like italics: each point moved right by k times its height above 0.5."""
    return [{**s, "points": [[x + k * (0.5 - y), y] for x, y in s["points"]]} for s in drawing]


def test_a_slanted_stroke_reaches_the_model_upright():
    bar = as_pen([[[0.4, 0.8], [0.6, 0.2]]])  # leaning right, 18 degrees off upright
    raw = preprocess.render_strokes(bar)[0]
    assert abs(slant_of(raw)) < 0.02, "upright, whatever the slant it was drawn at"
    assert center_of_mass(raw)[1] == pytest.approx(14, abs=0.5), "its centre of mass stays put"
    ys = np.nonzero(raw.sum(1) > 0.05)[0]
    assert ys[-1] - ys[0] + 1 == pytest.approx(preprocess.BOX, abs=1), "its height is untouched"


def test_a_digit_reads_the_same_however_it_is_slanted(mnist, monkeypatch):
    """A person's italic and upright hands reach the model upright and as nearly one image;
    without the deskew step they do not."""
    digits = [i for i in mnist.train_x[30:60] if abs(slant_of(i.astype(float))) < 0.2][:10]

    def gaps(render) -> tuple[float, float]:
        gap, slants = [], []
        for image in digits:
            drawing = digit_strokes(image, 0.6)
            upright = render(drawing)
            for k in (-0.2, 0.2):
                seen = render(sheared(drawing, k))
                gap.append(np.abs(seen - upright).mean())
                slants.append(abs(slant_of(seen)))
        return float(np.mean(gap)), max(slants)

    gap, slant = gaps(lambda d: preprocess.render_strokes(d)[0])
    assert slant < 0.03
    monkeypatch.setattr(preprocess, "deskew", lambda images: np.asarray(images, np.float64))
    gap_without, slant_without = gaps(lambda d: preprocess.render_strokes(d)[0])
    assert slant_without > 0.2
    # what remains is resampling and the wider box of a slanted drawing (measured 0.37x)
    assert gap < 0.5 * gap_without, (gap, gap_without)


def test_a_dash_is_left_flat_and_a_steep_lean_is_capped():
    flat = np.zeros((1, 28, 28))
    flat[0, 13:15, 4:24] = 1.0
    assert np.array_equal(preprocess.deskew(flat), flat), "too little height to judge a slant"
    # a line leaning 60 degrees (1.7 columns per row) is sheared by the cap, no more
    line = steep_line()
    assert slant_of(preprocess.deskew(line)[0]) == pytest.approx(
        slant_of(line[0]) + preprocess.MAX_SHEAR, abs=0.05
    )


def steep_line() -> np.ndarray:
    line = np.zeros((1, 28, 28))
    for y in range(8, 20):
        x = 14 + 1.7 * (14 - y)
        line[0, y, int(np.floor(x))] = 1 - (x - np.floor(x))
        line[0, y, int(np.floor(x)) + 1] = x - np.floor(x)
    return line


def test_upright_mnist_digits_are_the_deskewed_images_in_uint8(mnist):
    images = mnist.train_x[:50]
    got = preprocess.upright(images)
    assert got.dtype == np.uint8 and got.shape == images.shape
    assert np.abs(got.astype(float) - preprocess.deskew(images)).max() <= 0.5 + 1e-9
    before = np.array([slant_of(i.astype(float)) for i in images])
    after = np.array([slant_of(g.astype(float)) for g in got])
    # upright, but for the few that lean past the cap: those keep the rest of their lean
    residual = before - np.clip(before, -preprocess.MAX_SHEAR, preprocess.MAX_SHEAR)
    assert np.abs(after - residual).max() < 0.03, np.round(after - residual, 3)
    assert np.abs(before).mean() > 0.1, "MNIST's digits do lean"


DESKEW_JS = """
import { deskew } from "./preprocess.mjs";
const images = JSON.parse(await new Promise((resolve) => {
  let s = ""; process.stdin.on("data", (d) => (s += d)); process.stdin.on("end", () => resolve(s));
}));
console.log(JSON.stringify(images.map((im) => Array.from(deskew(Float64Array.from(im))))));
"""


def test_the_pages_deskew_matches_the_python_reference(tmp_path, mnist):
    shutil.copyfile(ROOT / "site_src" / "preprocess.js", tmp_path / "preprocess.mjs")
    (tmp_path / "deskew.mjs").write_text(DESKEW_JS)
    # digits, a line past the shear cap, and nothing at all
    images = np.concatenate([mnist.train_x[:20] / 255, steep_line(), np.zeros((1, 28, 28))])
    out = subprocess.run(
        ["node", str(tmp_path / "deskew.mjs")],
        input=json.dumps(images.reshape(len(images), -1).tolist()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    got = np.array(json.loads(out.stdout)).reshape(images.shape)
    assert np.abs(got - preprocess.deskew(images)).max() <= 1e-9
