"""Per-prediction latency of the runtime in headless Chromium (WebGPU on SwiftShader here).

    python bench/browser_latency.py [--config config.toml] [--runs 200] [MODEL ...]

Reads build/webgpu/<name>/ next to the config (run `doit compile` first) and prints,
per model and backend, the median and p95 ms of predict() and the time from
loadModel() to the first prediction. Targets on SwiftShader: MLP <= 10 ms, CNN <= 25 ms
median. Figures from a shared CPU are noisy: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]  # the package; the kits (tests/kits)

from kits.browser_env import chromium_page, serve, stage_site  # noqa: E402

from mnist_webgpu.core import config  # noqa: E402
from mnist_webgpu.core.layout import SiteModel  # noqa: E402
from mnist_webgpu.data import mnist as data  # noqa: E402

BACKENDS = ("webgpu", "cpu")
TARGET_MS = {"mlp": 10, "cnn": 25}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", metavar="MODEL", help="default: every model in the config")
    parser.add_argument("--config", type=Path, default=config.config_path())
    parser.add_argument("--runs", type=int, default=200, help="predictions timed per model and backend")
    parser.add_argument("--form", default=None, help="weight form (default: each manifest's default)")
    args = parser.parse_args(argv)
    cfg = config.load(args.config)
    names = args.models or list(cfg.model_names)
    images = data.load(cfg.cache_dir()).test_x[:100]
    options_base = {"form": args.form} if args.form else {}
    with tempfile.TemporaryDirectory() as tmp:
        stage_site(Path(tmp), cfg.base_dir, names, images)
        with serve(Path(tmp)) as url, chromium_page(url) as page:
            print(f"{'model':8} {'backend':8} {'median ms':>10} {'p95 ms':>8} {'load->first ms':>15}  target")
            for name in names:
                for backend in BACKENDS:
                    r = page.evaluate(
                        "([m, o, i, n]) => harness.latency(m, o, i, n)",
                        [
                            "../" + SiteModel(name).manifest,
                            {**options_base, "backend": backend},
                            "../inputs.bin",
                            args.runs,
                        ],
                    )
                    arch = cfg.model(name).arch
                    target = f"<= {TARGET_MS[arch]} ms" if backend == "webgpu" and arch in TARGET_MS else ""
                    figures = f"{r['median']:10.2f} {r['p95']:8.2f} {r['firstMs']:15.1f}"
                    print(f"{name:8} {r['backend']:8} {figures}  {target}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
