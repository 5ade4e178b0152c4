"""`doit bench`: every bench, one report: build/bench/report.json and build/bench/report.md.

    python bench/run.py [--quick] [--config config.toml] [--build-config PATH]
        [--parts browser,build,payload,drawn,pen]

Run from the project directory after `doit build` (dist/ and build/webgpu/ are measured).
--quick runs every part with few repetitions so CI can run it; its figures are not for
the README. The build part times the real doit in a temporary copy of the project on
--build-config (default: the project's config; tests/kits/fast.toml with --quick). The drawn
part draws validation digits in bench/drawn_digits.py's four conditions through the page
(100 per condition, 10 with --quick); the README's test-digit figures come from that
script run once with --test. The pen part replays real people's pen digits, every digit of
the validation writers (10 with --quick), through the page: bench/drawn_digits.py --pen.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT / "src"), str(BENCH), str(ROOT / "tests")]  # package, bench, tests/kits

import build_times  # noqa: E402
import payload  # noqa: E402

from mnist_webgpu.core import (  # noqa: E402
    config,
    files,
)
from mnist_webgpu.core.errors import PipelineError  # noqa: E402

OUT = Path("build/bench")
PARTS = ("browser", "build", "payload", "drawn", "pen")
DRAWN_DIGITS = {True: 10, False: 100}  # per condition: quick, full
PEN_DIGITS = {True: 10, False: 0}  # per condition: quick, full (0: every validation writer's digit)
FAST_CONFIG = ROOT / "tests" / "kits" / "fast.toml"
BUILD_FIGURES = ("cold_build", "noop_rebuild", "template_only_rebuild", "hyperparameter_rebuild")
BUILD_TARGETS_S = {"noop_rebuild": 2, "template_only_rebuild": 5}


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def machine() -> dict:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def measure(cfg: config.Config, quick: bool, build_cfg: config.Config, parts: list[str]) -> dict:
    report: dict = {"meta": {"quick": quick, "config": str(cfg.path), "machine": machine()}}
    if "browser" in parts:
        import browser  # playwright and onnx only load when the browser part runs

        report["browser"], report["onnxruntime_web"] = browser.run(cfg, list(cfg.model_names), quick)
    if "build" in parts:
        report["build"] = build_times.run(build_cfg, 1 if quick else 3, log=log)
    if "drawn" in parts:
        import drawn_digits

        from mnist_webgpu.data import mnist as data

        images, labels, split = drawn_digits.pick_digits(
            cfg, data.load(cfg.cache_dir()), DRAWN_DIGITS[quick], False
        )
        found = drawn_digits.measure(
            Path("dist"), images, labels, list(cfg.model_names), list(drawn_digits.CONDITIONS)
        )
        report["drawn"] = {"split": split, "digits": len(images), "models": found}
    if "pen" in parts:
        import drawn_digits

        digits = drawn_digits.pen_digits(cfg, PEN_DIGITS[quick])
        found = drawn_digits.measure_pen(
            Path("dist"), digits, list(cfg.model_names), list(drawn_digits.PEN_CONDITIONS)
        )
        for model in found.values():
            for figures in model.values():
                figures.pop("predictions")
        report["pen"] = {
            "writers": sorted({d.writer for d in digits}),
            "digits": len(digits),
            "models": found,
        }
    if "payload" in parts:
        report["payload"] = payload.run(Path("dist"))
        if "browser" in report:
            app = report["browser"]["app"]
            report["payload"]["bytes_before_first_prediction"] = app["bytes_before_first_prediction"]
            report["payload"]["default_model"] = app["default_model"]
    return report


def _ms(v: float) -> str:
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 10 else f"{v:.1f}"


def _kb(n: int) -> str:
    return f"{n / 1000:,.1f} kB"


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def markdown(report: dict) -> str:
    meta = report["meta"]
    lines = [
        "# mnist-webgpu benchmark",
        "",
        f"{meta['machine']['date']}, {meta['machine']['platform']}, {meta['machine']['cpus']} CPUs"
        + (" — **quick run: few repetitions, not for quoting**" if meta["quick"] else ""),
        "",
    ]
    if "browser" in report:
        b, o = report["browser"], report["onnxruntime_web"]
        adapter = b["webgpu_adapter"] or {}
        lines += [
            "## Browser inference, warm (ms per prediction)",
            "",
            f"{b['chromium']}; WebGPU adapter: {adapter.get('vendor', 'none')}"
            f" {adapter.get('architecture', '')}"
            f" (fallback: {adapter.get('fallback')}); {o['package']}, WASM on {o['wasm_threads']} thread.",
            f"Medians of {b['rounds']} interleaved pairs; argmax compared on {b['images']} test images; "
            f"timer step {b['timer_step_ms'] * 1000:.0f} us"
            f" (cross-origin isolated: {str(b['cross_origin_isolated']).lower()}).",
            "",
            "| model (form) | ours | median | p95 | ORT Web | median | p95 | ours/ORT | same argmax "
            "| target |",
            "|---|---|---:|---:|---|---:|---:|---:|---|---|",
        ]
        for name, ours in b["models"].items():
            for backend, ep in (("webgpu", "webgpu"), ("cpu", "wasm")):
                us, them = ours[backend], o["models"][name][ep]
                ratio = them["ratio_ours_over_ort_median"]
                agree = "yes" if them["argmax_agree"] else f"no ({them['argmax_mismatches']})"
                lines.append(
                    f"| {name} ({ours['form']}) | {backend} | {_ms(us['median_ms'])} | {_ms(us['p95_ms'])} "
                    f"| {ep} | {_ms(them['median_ms'])} | {_ms(them['p95_ms'])} | {ratio:.2f} | {agree} "
                    f"| ours <= ORT: {_met(ratio <= 1)} |"
                )
        lines += [
            "",
            "## Navigation to first prediction (fresh context, empty cache)",
            "",
            "| model | engine | ms | bytes fetched |",
            "|---|---|---:|---:|",
        ]
        for name, ours in b["models"].items():
            for label, fig in (
                ("ours webgpu", ours["webgpu"]),
                ("ours cpu", ours["cpu"]),
                ("ORT webgpu", o["models"][name]["webgpu"]),
                ("ORT wasm", o["models"][name]["wasm"]),
            ):
                lines.append(
                    f"| {name} | {label} | {fig['navigation_to_first_prediction_ms']:,.0f} "
                    f"| {fig['bytes_before_first_prediction']:,} |"
                )
        app = b["app"]
        lines += [
            "",
            f"The app (dist/index.html, default model {app['default_model']}, backend {app['backend']}): "
            f"model ready {app['navigation_to_model_ready_ms']:,.0f} ms after navigation, first prediction "
            f"{_ms(app['first_prediction_ms'])} ms after the pen goes down, the stroke's final "
            f"prediction {_ms(app['stroke_end_to_prediction_ms'])} ms after the pen lifts, "
            f"{_kb(app['bytes_before_first_prediction'])} fetched.",
            "",
        ]
    if "build" in report:
        bl = report["build"]
        lines += [
            f"## Build (doit, {bl['runs']} run(s) each, config {Path(bl['config']).name}, MNIST cached)",
            "",
            "| figure | median s | tasks run | target |",
            "|---|---:|---|---|",
        ]
        for key in BUILD_FIGURES:
            fig = bl[key]
            target = BUILD_TARGETS_S.get(key)
            verdict = f"< {target} s: {_met(fig['median_s'] < target)}" if target else ""
            tasks = ", ".join(fig["tasks_run"]) or "none"
            lines.append(f"| {key.replace('_', ' ')} | {fig['median_s']:.2f} | {tasks} | {verdict} |")
        lines.append("")
    if "drawn" in report:
        d = report["drawn"]
        conditions = next(iter(d["models"].values())).keys()
        lines += [
            f"## Drawn digits ({d['digits']} {d['split']} digits per condition, through the page)",
            "",
            "| model | " + " | ".join(conditions) + " |",
            "|---|" + "---:|" * len(conditions),
        ]
        for name, r in d["models"].items():
            lines.append(f"| {name} | " + " | ".join(f"{r[c]['accuracy']:.1%}" for c in conditions) + " |")
        lines.append("")
    if "pen" in report:
        pen = report["pen"]
        writers = ", ".join(map(str, pen["writers"]))
        lines += [
            f"## Real pen digits ({pen['digits']} digits of validation writers {writers}, through the page)",
            "",
            "| model | condition | read | declined | worst writer | per digit |",
            "|---|---|---:|---:|---|---|",
        ]
        for name, by_condition in pen["models"].items():
            for condition, f in by_condition.items():
                digits = " ".join(f"{k}:{v:.0%}" for k, v in f["by_digit"].items())
                lines.append(
                    f"| {name} | {condition} | {f['accuracy']:.2%} | {f['declined']:.1%} "
                    f"| {f['worst_writer']}: {f['worst_accuracy']:.1%} | {digits} |"
                )
        lines.append("")
    if "payload" in report:
        p = report["payload"]
        lines += [
            "## Payload",
            "",
            f"dist/: {_kb(p['dist_bytes'])} in {p['dist_files']} files (assets {_kb(p['assets_bytes'])}).",
            "",
            "| model | default form | manifest | "
            + " | ".join(f"weights {f}" for f in ("f32", "f16", "int8"))
            + " |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for name, m in p["models"].items():
            weights = " | ".join(_kb(m["weights_bytes"].get(f, 0)) for f in ("f32", "f16", "int8"))
            lines.append(f"| {name} | {m['default_form']} | {_kb(m['manifest_bytes'])} | {weights} |")
        if "bytes_before_first_prediction" in p:
            n, target = p["bytes_before_first_prediction"], p["target_bytes_before_first_prediction"]
            lines += [
                "",
                f"Bytes before the first prediction (default model {p['default_model']}): {_kb(n)}; "
                f"target <= {_kb(target)}: {_met(n <= target)}.",
            ]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions of every part (CI)")
    parser.add_argument("--config", type=Path, default=None, help="the project's config (default: as doit's)")
    parser.add_argument("--build-config", type=Path, default=None, help="config the build part builds")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    try:
        unknown = [p for p in parts if p not in PARTS]
        if unknown:
            raise PipelineError(f"--parts: no part {unknown[0]!r} (known: {', '.join(PARTS)})")
        cfg = config.load(args.config)
        build_path = args.build_config or (FAST_CONFIG if args.quick else cfg.path)
        report = measure(cfg, args.quick, config.load(build_path), parts)
        files.write_json(args.out / "report.json", report)
        files.write_text(args.out / "report.md", markdown(report))
    except (PipelineError, config.ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"error: the bench needs {exc.name}: pip install -e '.[bench,test]'", file=sys.stderr)
        return 1
    print(f"bench: wrote {args.out / 'report.json'} and {args.out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
