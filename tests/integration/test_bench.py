"""The bench scripts, run for real so they cannot rot: the ONNX conversion and a quick `doit bench`.

No timing is asserted: the figures are the bench's output, not its correctness.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import onnx_model
import pytest
from kits.modelkit import reference_logits
from kits.projectkit import FAST_MODELS, ROOT


@pytest.mark.parametrize("name", FAST_MODELS)
@pytest.mark.parametrize("form", ["f32", "int8"])
def test_onnx_graph_computes_what_tinygrad_computes(exported, mnist, name, form):
    images = mnist.test_x[:8]
    proto = onnx_model.from_model_dir(exported / "build" / "webgpu" / name, form)
    got = onnx_model.reference_logits(proto, images.astype(np.float32) / 255)
    want = reference_logits(exported, name, form, images)
    assert got.shape == want.shape == (8, 11)  # ten digits and "not a digit"
    assert np.abs(got - want).max() <= 1e-4
    assert np.array_equal(got.argmax(1), want.argmax(1))


def test_onnx_conversion_refuses_an_unknown_arch():
    with pytest.raises(onnx_model.PipelineError, match="no ONNX conversion for model arch 'rnn'"):
        onnx_model.build({"arch": "rnn", "widths": [4]}, {})


def positive(x) -> bool:
    return isinstance(x, int | float) and math.isfinite(x) and x > 0


@pytest.mark.slow
def test_quick_doit_bench_writes_a_complete_report(built):
    """On a copy of the built fast project: `doit bench` finds the build current and measures it."""
    project = built.root
    shutil.copytree(ROOT / "bench", project / "bench", ignore=shutil.ignore_patterns("__pycache__"))
    # the kits the bench scripts import (fast.toml: what --quick times the build on) and the
    # harness page the browser part serves
    for part in ("kits", "fixtures"):
        shutil.copytree(
            ROOT / "tests" / part, project / "tests" / part, ignore=shutil.ignore_patterns("__pycache__")
        )

    result = built.doit("bench", "--quick")
    assert "build/bench/report.json" in result.stdout

    report = json.loads((project / "build" / "bench" / "report.json").read_text())
    assert {"browser", "onnxruntime_web", "build", "payload", "drawn", "pen"} <= report.keys()
    assert report["meta"]["quick"] is True
    drawn = report["drawn"]
    assert drawn["split"] == "validation" and drawn["digits"] == 10
    for name in FAST_MODELS:
        assert set(drawn["models"][name]) == {"centred", "anywhere", "small", "pen"}
        assert all(0 <= r["accuracy"] <= 1 for r in drawn["models"][name].values())
    assert "## Drawn digits" in (project / "build" / "bench" / "report.md").read_text()
    pen = report["pen"]
    assert pen["digits"] == 10 and set(pen["writers"]) <= {29, 30}, "the fast config's validation writers"
    for name in FAST_MODELS:
        assert set(pen["models"][name]) == {"written", "small", "anywhere"}
        for f in pen["models"][name].values():
            assert 0 <= f["worst_accuracy"] <= f["accuracy"] <= 1 and set(f["by_writer"]) <= {"29", "30"}
    assert "## Real pen digits" in (project / "build" / "bench" / "report.md").read_text()

    browser, ort = report["browser"], report["onnxruntime_web"]
    assert browser["webgpu_adapter"]["architecture"] == "swiftshader"
    # isolated bench pages: a timer fine enough for sub-millisecond predictions
    assert browser["cross_origin_isolated"] is True and browser["timer_step_ms"] <= 0.02
    for name in FAST_MODELS:
        for backend in ("webgpu", "cpu"):
            figures = browser["models"][name][backend]
            for key in (
                "median_ms",
                "p95_ms",
                "navigation_to_first_prediction_ms",
                "bytes_before_first_prediction",
            ):
                assert positive(figures[key]), (name, backend, key, figures[key])
            assert figures["p95_ms"] >= figures["median_ms"]
        for ep, paired in (("webgpu", "webgpu"), ("wasm", "cpu")):
            theirs = ort["models"][name][ep]
            assert theirs["paired_with_ours"] == paired
            assert theirs["argmax_agree"] is True and theirs["argmax_mismatches"] == 0
            assert theirs["images_checked"] == browser["images"] > 0
            assert theirs["max_abs_logit_diff"] < 1e-3
            for key in ("median_ms", "navigation_to_first_prediction_ms", "ratio_ours_over_ort_median"):
                assert positive(theirs[key]), (name, ep, key, theirs[key])
            # ORT's wasm alone outweighs our whole runtime and model
            assert theirs["bytes_before_first_prediction"] > 1_000_000
    app = browser["app"]
    # headless Chromium's WebGPU adapter is SwiftShader, a fallback (software) adapter: the app,
    # measured as users get it, takes its faster CPU path there
    assert app["backend"] == "cpu" and app["default_model"] == "mlp"
    urls = {f["url"] for f in app["fetched_before_first_prediction"]}
    assert {"/index.html", "/models/mlp/manifest.json"} <= urls
    assert positive(app["navigation_to_first_prediction_ms"]) and positive(app["first_prediction_ms"])
    assert app["stroke_end_to_prediction_ms"] >= 0

    build = report["build"]
    assert build["cold_build"]["tasks_run"] == sorted(
        [
            "drawings",
            *(f"{stage}:{m}" for m in FAST_MODELS for stage in ("train", "compile")),
            "site",
            "verify",
        ]
    )
    assert build["noop_rebuild"]["tasks_run"] == []
    assert build["template_only_rebuild"]["tasks_run"] == ["site", "verify"]
    assert build["hyperparameter_rebuild"]["tasks_run"] == ["compile:mlp", "site", "train:mlp", "verify"]
    assert all(positive(build[k]["median_s"]) for k in ("cold_build", "noop_rebuild"))

    payload = report["payload"]
    dist_bytes = sum(p.stat().st_size for p in (project / "dist").rglob("*") if p.is_file())
    assert payload["dist_bytes"] == dist_bytes
    mlp = payload["models"]["mlp"]
    assert mlp["weights_bytes"]["int8"] < mlp["weights_bytes"]["f16"] < mlp["weights_bytes"]["f32"]
    weights = mlp["weights_bytes"][mlp["default_form"]]
    assert weights < payload["bytes_before_first_prediction"] < dist_bytes

    summary = (project / "build" / "bench" / "report.md").read_text()
    assert "ours/ORT" in summary and "quick run" in summary
