"""Test helpers for the site: plausible build artefacts. The Python reference of the app's
preprocessing lives in bench/preprocess_ref.py (the bench simulates drawn digits with it) and is
re-exported here; serving and browser settings live in bench/browser_env.py."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
from preprocess_ref import area_weights, center_of_mass, preprocess_reference
from projectkit import ROOT

from mnist_webgpu import site
from mnist_webgpu.config import Config

FAKE_RUNTIME = ROOT / "tests" / "fixtures" / "fake_runtime.js"
__all__ = [
    "area_weights",
    "center_of_mass",
    "linear_classifier",
    "make_inputs",
    "predict",
    "preprocess_reference",
]


def linear_classifier(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares one-vs-all on raw [0,1] pixels (~85% on MNIST): a real, tiny model."""
    a = np.hstack([x.reshape(len(x), -1).astype(np.float64) / 255, np.ones((len(x), 1))])
    t = np.eye(10)[y] * 8 - 4  # targets far apart so the softmax is decisive
    w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ t)
    return w[:-1].astype(np.float32), w[-1].astype(np.float32)


def predict(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (x.reshape(len(x), -1).astype(np.float32) / 255 @ w + b).argmax(1)


def make_inputs(tmp: Path, cfg: Config, mnist, *, train_count: int = 4000) -> site.Paths:
    """build/ artefacts for every model of `cfg`, a site_src overlay with the fake runtime."""
    build = tmp / "build"
    for k, m in enumerate(cfg.models):
        lo = k * 3000
        part = slice(lo, lo + train_count)
        w, b = linear_classifier(mnist.train_x[part], mnist.train_y[part], 10.0 + 90 * k)
        pred = predict(w, b, mnist.test_x)
        truth = mnist.test_y.astype(np.int64)
        conf = np.zeros((10, 10), dtype=np.int64)
        np.add.at(conf, (truth, pred), 1)
        per_class = (conf.diagonal() / conf.sum(1)).tolist()
        test_acc = float((pred == truth).mean())
        steps = list(range(0, m.steps + 1, m.eval_every))
        loss = [2.3 * math.exp(-s / (m.steps / 4)) + 0.25 for s in steps]
        val = [None if s == 0 else min(0.99, test_acc - 0.15 * math.exp(-s / (m.steps / 5))) for s in steps]
        mdir = build / "models" / m.name
        mdir.mkdir(parents=True)
        metrics = {
            "test_accuracy": test_acc,
            "val_accuracy": test_acc + 0.004,
            "per_class_accuracy": per_class,
            "confusion_matrix": conf.tolist(),
            "curves": {"step": steps, "train_loss": loss, "val_accuracy": val},
            "params": int(w.size + b.size),
            "weight_bytes": int((w.size + b.size) * 4),
            "train_seconds": 12.5 + 60 * k,
            "steps_per_second": m.steps / (12.5 + 60 * k),
            "steps": m.steps,
            "device": "CPU",
            "tinygrad_version": "0.14.0",
            "config": m.as_dict(),
            "config_hash": "0123456789abcdef" * 4,
            "created": "2025-01-02T03:04:05+00:00",
        }
        (mdir / "metrics.json").write_text(json.dumps(metrics))
        wrong = np.nonzero(pred != truth)[0]
        mis = {
            "indices": wrong.tolist(),
            "labels": truth[wrong].tolist(),
            "predictions": pred[wrong].tolist(),
        }
        (mdir / "misclassified.json").write_text(json.dumps(mis))
        wdir = build / "webgpu" / m.name
        wdir.mkdir(parents=True)
        blob = np.concatenate([w.ravel(), b]).astype("<f4").tobytes()
        (wdir / "weights.f32.bin").write_bytes(blob)
        (wdir / "weights.f16.bin").write_bytes(np.frombuffer(blob, "<f4").astype("<f2").tobytes())
        (wdir / "weights.int8.bin").write_bytes(bytes(len(blob) // 4))
        acc = {"validation_accuracy": test_acc, "test_accuracy": test_acc}
        forms = [
            {"form": "f32", "file": "weights.f32.bin", "bytes": len(blob), **acc},
            {"form": "f16", "file": "weights.f16.bin", "bytes": len(blob) // 2, **acc},
            {
                "form": "int8",
                "file": "weights.int8.bin",
                "bytes": len(blob) // 4,
                "validation_accuracy": 0.1,
                "test_accuracy": 0.1,
            },
        ]
        manifest = {"name": m.name, "arch": m.arch, "forms": forms, "default_form": "f32", "kernels": []}
        (wdir / "manifest.json").write_text(json.dumps(manifest))

    site_src = tmp / "site_src"
    shutil.copytree(ROOT / "site_src", site_src)
    shutil.copyfile(FAKE_RUNTIME, site_src / "runtime.js")
    return site.Paths(build=build, templates=ROOT / "templates", site_src=site_src, cache=cfg.cache_dir())
