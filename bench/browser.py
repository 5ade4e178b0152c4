"""Our runtime against ONNX Runtime Web in the same headless Chromium, same weights, same images.

    python bench/browser.py [--quick] [--config config.toml] [MODEL ...]

Needs build/webgpu/<name>/ and dist/ (run `doit build`), the `onnx` package (the bench
extra) and npm: onnxruntime-web is installed on first use into <MNIST cache>/npm/
($MNIST_WEBGPU_BENCH_NPM overrides) and served from 127.0.0.1 with everything else (no CDN).

For each model, with its default weight form (the one the site ships):
  - warm latency, our WebGPU runtime against ORT's WebGPU execution provider, and our CPU
    fallback against ORT's WASM one (one thread each), in pairs interleaved in one page;
    the ratio is the median of the per-pair ratios ours/ORT. The bench pages are served
    cross-origin isolated for one reason: Chromium's performance.now() then has 5 us steps
    instead of 100 us, which sub-millisecond predictions need (ORT still gets one thread);
  - the argmax of both engines on every bench image (they must agree);
  - navigation to the first prediction and the bytes fetched before it, on a fresh
    browser context (empty cache) each time, for the four engine/backend combinations;
and once for the app itself (dist/index.html, default model): navigation to the model
being ready, the first prediction after a stroke, and the bytes fetched until then.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT / "src"), str(BENCH), str(ROOT / "tests")]  # package, bench, tests/kits

import onnx_model  # noqa: E402
from kits.browser_env import CHROMIUM, CHROMIUM_ARGS, ISOLATION_HEADERS, serve  # noqa: E402

from mnist_webgpu.core import config  # noqa: E402
from mnist_webgpu.core.errors import PipelineError  # noqa: E402
from mnist_webgpu.core.layout import Layout, SiteModel  # noqa: E402
from mnist_webgpu.data import mnist as data  # noqa: E402
from mnist_webgpu.site.render import write_runtime  # noqa: E402

ORT_PACKAGE = "onnxruntime-web"
ORT_VERSION = "1.30.0"  # pinned: figures from different ORT releases are not comparable
# beside the MNIST cache, not in build/: `doit clean` and fresh project copies keep the 150 MB
NPM_ENV = "MNIST_WEBGPU_BENCH_NPM"
# what onnxruntime-web/webgpu and onnxruntime-web/wasm import, and the wasm binaries they load
ORT_FILES = (
    "ort.webgpu.min.mjs",
    "ort-wasm-simd-threaded.asyncify.mjs",
    "ort-wasm-simd-threaded.asyncify.wasm",
    "ort.wasm.min.mjs",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
)
PAIRS = (("webgpu", "webgpu"), ("cpu", "wasm"))  # (our backend, ORT execution provider)
TIMEOUT_MS = 600_000
ONNX = "model.onnx"  # each model's ONNX twin, beside its manifest (bench/page/cold.js asks for it by name)


def median(xs) -> float:
    return float(statistics.median(xs))


def p95(xs) -> float:
    s = sorted(xs)
    return float(s[min(len(s) - 1, int(0.95 * len(s)))])


def npm_prefix(cfg: config.Config) -> Path:
    return Path(os.environ.get(NPM_ENV) or cfg.cache_dir() / "npm")


def ensure_ort(prefix: Path) -> Path:
    """The dist/ folder of the pinned onnxruntime-web, installed with npm into `prefix` when missing."""
    dist = prefix / "node_modules" / ORT_PACKAGE / "dist"
    package = dist.parent / "package.json"
    if package.is_file() and json.loads(package.read_text()).get("version") == ORT_VERSION:
        return dist.resolve()
    npm = shutil.which("npm")
    if npm is None:
        raise PipelineError(
            f"the bench needs npm to install {ORT_PACKAGE}@{ORT_VERSION} (apt-get install npm)"
        )
    prefix.mkdir(parents=True, exist_ok=True)
    print(f"bench: installing {ORT_PACKAGE}@{ORT_VERSION} into {prefix}", file=sys.stderr, flush=True)
    result = subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--ignore-scripts"]
        + [f"{ORT_PACKAGE}@{ORT_VERSION}"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not package.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"npm install {ORT_PACKAGE}@{ORT_VERSION} failed: {last}")
    return dist.resolve()


def stage(site: Path, project: Path, names: list[str], images: np.ndarray, ort_dist: Path) -> dict:
    """site/{runtime,bench,ort,models/<name>/(+model.onnx),inputs.bin}; returns {name: {form, onnx_bytes}}."""
    write_runtime(ROOT / "site_src", site / "runtime")
    shutil.copytree(BENCH / "page", site / "bench")
    (site / "ort").mkdir()
    for name in ORT_FILES:
        (site / "ort" / name).symlink_to(ort_dist / name)  # 60 MB of wasm: link, don't copy
    info, build = {}, Layout(project)
    for name in names:
        src, manifest, urls = build.webgpu_dir(name), build.manifest(name), SiteModel(name)
        if not manifest.is_file():
            raise PipelineError(f"{manifest}: missing (run `doit build` first)")
        shutil.copytree(src, site / urls.folder)
        form = json.loads(manifest.read_text())["default_form"]
        blob = onnx_model.from_model_dir(src, form).SerializeToString()
        (site / urls.file(ONNX)).write_bytes(blob)
        info[name] = {"form": form, "onnx_bytes": len(blob)}
    (site / "inputs.bin").write_bytes((images.astype(np.float32) / 255).tobytes())
    return info


@contextlib.contextmanager
def chromium() -> Iterator:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        raise PipelineError(f"{CHROMIUM}: not found (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def fresh_page(browser, url: str) -> Iterator:
    """A page in a new context (empty HTTP cache), with page errors collected into page.errors."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.goto(url)
        yield page
    finally:
        context.close()


def environment(browser, url: str) -> dict:
    with fresh_page(browser, url + "bench/index.html?ort=webgpu") as page:
        return page.evaluate(
            """async () => {
                const a = await navigator.gpu?.requestAdapter();
                const adapter = a && { vendor: a.info.vendor, architecture: a.info.architecture,
                                       description: a.info.description, fallback: a.info.isFallbackAdapter };
                // the smallest step performance.now() takes: what a single timing can resolve
                let step = Infinity;
                for (let i = 0, last = performance.now(); i < 1e6 && step > 0.001; i++) {
                    const now = performance.now();
                    if (now !== last) step = Math.min(step, now - last);
                    last = now;
                }
                return { user_agent: navigator.userAgent, webgpu_adapter: adapter || null,
                         hardware_concurrency: navigator.hardwareConcurrency,
                         cross_origin_isolated: crossOriginIsolated, timer_step_ms: step };
            }"""
        )


def warm(
    browser, url: str, names: list[str], info: dict, count: int, rounds: int, warmup: int, pairs=PAIRS
) -> dict:
    """{name: {backend: pair result}}: the two engines interleaved, one page per pair."""
    out: dict = {name: {} for name in names}
    for name in names:
        for backend, ep in pairs:
            with fresh_page(browser, url + "bench/index.html") as page:
                page.wait_for_function("window.benchReady === true")
                r = page.evaluate(
                    "(args) => bench.pair(args)",
                    {
                        "manifestUrl": "../" + SiteModel(name).manifest,
                        "form": info[name]["form"],
                        "backend": backend,
                        "onnxUrl": "../" + SiteModel(name).file(ONNX),
                        "ep": ep,
                        "inputsUrl": "../inputs.bin",
                        "count": count,
                        "rounds": rounds,
                        "warmup": warmup,
                    },
                )
                if page.errors:
                    raise PipelineError(f"bench page error ({name}, {backend}/{ep}): {page.errors[0]}")
            ours, theirs = np.array(r["oursArgmax"]), np.array(r["theirsArgmax"])
            ratios = [a / b for a, b in zip(r["oursMs"], r["theirsMs"], strict=True) if b > 0]
            out[name][backend] = {
                "ep": ep,
                "ours_ms": r["oursMs"],
                "ort_ms": r["theirsMs"],
                "ratio_ours_over_ort": median(ratios),
                "argmax_mismatches": int((ours != theirs).sum()),
                "images_checked": len(ours),
                "max_abs_logit_diff": float(r["maxAbsDiff"]),
            }
            print(
                f"bench: {name:5} ours {backend:6} {median(r['oursMs']):8.3f} ms | "
                f"ort {ep:6} {median(r['theirsMs']):8.3f} ms | ratio {median(ratios):.2f} | "
                f"argmax mismatches {int((ours != theirs).sum())}/{len(ours)}",
                file=sys.stderr,
                flush=True,
            )
    return out


def cold(browser, url: str, names: list[str], info: dict, reps: int) -> dict:
    """{name: {"ours-webgpu" | "ours-cpu" | "ort-webgpu" | "ort-wasm": [{firstMs, bytes, fetched}, ...]}}."""
    combos = [("ours", b) for b, _ in PAIRS] + [("ort", ep) for _, ep in PAIRS]
    out: dict = {name: {f"{e}-{b}": [] for e, b in combos} for name in names}
    for rep in range(reps):
        for name in names:
            # rotate the order each repetition so no engine always loads first (a warmer disk cache)
            shift = rep % len(combos)
            for engine, backend in combos[shift:] + combos[:shift]:
                query = f"engine={engine}&backend={backend}&model={name}&form={info[name]['form']}"
                with fresh_page(browser, url + "bench/cold.html?" + query) as page:
                    page.wait_for_function("window.coldResult !== undefined")
                    r = page.evaluate("() => window.coldResult")
                if "error" in r:
                    raise PipelineError(f"bench cold start ({name}, {engine} {backend}): {r['error']}")
                out[name][f"{engine}-{backend}"].append(r)
    return out


STROKES = 5
APP_INIT = """
window.__bench = { strokeEnds: [] };
const mark = (key) => { if (window.__bench[key] === undefined) window.__bench[key] = performance.now(); };
new MutationObserver(() => {
  const app = document.getElementById("app");
  if (app?.dataset.ready === "true") mark("ready");
  if (app?.dataset.state === "predicted") mark("predicted");
  // the prediction for the whole finished stroke is on screen
  if (window.__bench.penUp !== undefined && app?.dataset.settled === "true") {
    window.__bench.strokeEnds.push(performance.now() - window.__bench.penUp);
    window.__bench.penUp = undefined;
    // a selector to wait for: the app's CSP forbids the eval behind wait_for_function
    document.documentElement.dataset.benchStrokes = String(window.__bench.strokeEnds.length);
  }
}).observe(document, {
  subtree: true, attributes: true, attributeFilter: ["data-ready", "data-state", "data-settled"],
});
addEventListener("pointerdown", () => mark("inkStart"), true);
addEventListener("pointerup", () => (window.__bench.penUp = performance.now()), true);
"""


def app(browser, dist_url: str, reps: int) -> list[dict]:
    """The shipped app from a cold cache: navigation -> model ready -> pen down -> first prediction
    shown; then pen up -> the finished stroke's prediction shown, for STROKES strokes."""
    runs = []
    for _ in range(reps):
        context = browser.new_context()
        try:
            context.add_init_script(APP_INIT)
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(dist_url + "index.html")
            page.wait_for_selector("#app[data-ready=true]", state="attached")
            pad = page.locator("#pad")
            pad.scroll_into_view_if_needed()
            box = pad.bounding_box()
            for stroke in range(STROKES):  # a few strokes side by side, each settled before the next
                x, y = box["x"] + box["width"] * (0.35 + 0.06 * stroke), box["y"] + box["height"] * 0.2
                page.mouse.move(x, y)
                page.mouse.down()
                page.mouse.move(x, y + box["height"] * 0.6, steps=8)
                page.mouse.up()
                page.wait_for_selector(f"html[data-bench-strokes='{stroke + 1}']", state="attached")
            r = page.evaluate(
                """() => {
                    const b = window.__bench;
                    const nav = performance.getEntriesByType("navigation")[0];
                    const fetched = [{ url: new URL(nav.name).pathname, bytes: nav.encodedBodySize }].concat(
                      performance.getEntriesByType("resource")
                        .filter((e) => e.responseEnd <= b.predicted)
                        .map((e) => ({ url: new URL(e.name).pathname, bytes: e.encodedBodySize })));
                    return { ready: b.ready, inkStart: b.inkStart, predicted: b.predicted,
                             strokeEnds: b.strokeEnds,
                             backend: document.getElementById("app").dataset.backend, fetched };
                }"""
            )
        finally:
            context.close()
        # the app predicts on the first frame with ink, mid-stroke: time it from the pen going down
        r["first_prediction_ms"] = r["predicted"] - r["inkStart"]
        r["bytes"] = sum(f["bytes"] for f in r["fetched"])
        runs.append(r)
    return runs


def run(cfg: config.Config, names: list[str], quick: bool, project: Path = Path(".")) -> tuple[dict, dict]:
    """The `browser` and `onnxruntime_web` sections of the report."""
    count, rounds, warmup, reps = (16, 12, 3, 1) if quick else (100, 200, 20, 5)
    images = data.load(cfg.cache_dir()).test_x[:count]
    dist = project / "dist"
    if not (dist / "index.html").is_file():
        raise PipelineError(f"{dist / 'index.html'}: missing (run `doit build` first)")
    ort_dist = ensure_ort(npm_prefix(cfg))
    with tempfile.TemporaryDirectory(prefix="mnist-bench-") as tmp:
        site = Path(tmp)
        info = stage(site, project, names, images, ort_dist)
        # the app is measured as a user gets it: dist/ as it is served, without isolation
        with serve(site, ISOLATION_HEADERS) as url, serve(dist) as dist_url, chromium() as browser:
            env = environment(browser, url)
            pairs = warm(browser, url, names, info, count, rounds, warmup)
            starts = cold(browser, url, names, info, reps)
            apps = app(browser, dist_url, reps)

    def start_figures(runs: list[dict]) -> dict:
        return {
            "navigation_to_first_prediction_ms": median([r["firstMs"] for r in runs]),
            "bytes_before_first_prediction": int(median([r["bytes"] for r in runs])),
        }

    ours_section, ort_section = {}, {}
    for name in names:
        ours_section[name] = {"form": info[name]["form"]}
        ort_section[name] = {"form": info[name]["form"], "onnx_bytes": info[name]["onnx_bytes"]}
        for backend, ep in PAIRS:
            p = pairs[name][backend]
            ours_section[name][backend] = {
                "median_ms": median(p["ours_ms"]),
                "p95_ms": p95(p["ours_ms"]),
                **start_figures(starts[name][f"ours-{backend}"]),
            }
            ort_section[name][ep] = {
                "median_ms": median(p["ort_ms"]),
                "p95_ms": p95(p["ort_ms"]),
                **start_figures(starts[name][f"ort-{ep}"]),
                "paired_with_ours": backend,
                "ratio_ours_over_ort_median": p["ratio_ours_over_ort"],
                "argmax_agree": p["argmax_mismatches"] == 0,
                "argmax_mismatches": p["argmax_mismatches"],
                "images_checked": p["images_checked"],
                "max_abs_logit_diff": p["max_abs_logit_diff"],
            }
    last = apps[-1]
    browser_section = {
        "chromium": env["user_agent"],
        "webgpu_adapter": env["webgpu_adapter"],
        "hardware_concurrency": env["hardware_concurrency"],
        "cross_origin_isolated": env["cross_origin_isolated"],
        "timer_step_ms": env["timer_step_ms"],
        "images": count,
        "rounds": rounds,
        "cold_starts": reps,
        "models": ours_section,
        "app": {
            "default_model": cfg.site.default_model,
            "backend": last["backend"],
            "navigation_to_model_ready_ms": median([r["ready"] for r in apps]),
            "first_prediction_ms": median([r["first_prediction_ms"] for r in apps]),
            "stroke_end_to_prediction_ms": median([t for r in apps for t in r["strokeEnds"]]),
            # what a user waits for, minus however long they take to draw
            "navigation_to_first_prediction_ms": median(
                [r["ready"] + r["first_prediction_ms"] for r in apps]
            ),
            "bytes_before_first_prediction": int(median([r["bytes"] for r in apps])),
            "fetched_before_first_prediction": last["fetched"],
        },
    }
    ort_section = {
        "package": f"{ORT_PACKAGE}@{ORT_VERSION}",
        "builds": {"webgpu": "ort.webgpu.min.mjs", "wasm": "ort.wasm.min.mjs"},
        "wasm_threads": 1,
        "models": ort_section,
    }
    return browser_section, ort_section


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", metavar="MODEL", help="default: every model in the config")
    parser.add_argument("--config", type=Path, default=config.config_path())
    parser.add_argument("--quick", action="store_true", help="few repetitions (CI)")
    args = parser.parse_args(argv)
    try:
        cfg = config.load(args.config)
        ours, theirs = run(cfg, args.models or list(cfg.model_names), args.quick)
    except (PipelineError, config.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"browser": ours, "onnxruntime_web": theirs}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
