"""Test helpers for the site: plausible build artefacts. The Python reference of the app's
preprocessing is mnist_webgpu.drawings.preprocess; serving and browser settings live in
tests/kits/browser_env.py."""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import numpy as np

from kits import wasmkit
from kits.projectkit import ROOT
from mnist_webgpu.core import config, records
from mnist_webgpu.core.config import Config
from mnist_webgpu.core.layout import Layout
from mnist_webgpu.site import render as site

FAKE_RUNTIME = ROOT / "tests" / "fixtures" / "fake_runtime.js"
__all__ = ["center_of_mass", "linear_classifier", "make_inputs", "predict"]


def center_of_mass(img: np.ndarray) -> tuple[float, float]:
    gy, gx = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    return float((img * gy).sum() / img.sum()), float((img * gx).sum() / img.sum())


def linear_classifier(x: np.ndarray, y: np.ndarray, ridge: float) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares one-vs-all on raw [0,1] pixels (~85% on MNIST): a real, tiny model."""
    a = np.hstack([x.reshape(len(x), -1).astype(np.float64) / 255, np.ones((len(x), 1))])
    t = np.eye(10)[y] * 8 - 4  # targets far apart so the softmax is decisive
    w = np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ t)
    return w[:-1].astype(np.float32), w[-1].astype(np.float32)


def predict(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (x.reshape(len(x), -1).astype(np.float32) / 255 @ w + b).argmax(1)


def drawn_figures(w: np.ndarray, b: np.ndarray, mnist, count: int = 40) -> records.Drawn:
    """The linear model's answers on test digits drawn as on the pad and generated non-digits
    (ten outputs: no "not a digit" rule, so nothing is declined)."""
    from mnist_webgpu.drawings import pad as drawings
    from mnist_webgpu.train import verdict

    def logits(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1).astype(np.float32) / 255 @ w + b

    digits = drawings.draw_digits(mnist.test_x[:count], seed=3)
    negatives, kinds = drawings.draw_negatives(mnist.test_x[:200], count, seed=3)
    return verdict.figures(
        None,
        (logits(digits), mnist.test_y[:count]),
        logits(mnist.test_x[:count]),
        (logits(negatives), np.array(kinds)),
    )


def make_inputs(tmp: Path, cfg: Config, mnist, *, train_count: int = 4000) -> site.Paths:
    """build/ artefacts for every model of `cfg`, a site_src overlay with the fake runtime."""
    lay = Layout(tmp)
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
        steps = list(range(m.eval_every, m.steps + 1, m.eval_every))
        loss = [2.3 * math.exp(-s / (m.steps / 4)) + 0.25 for s in steps]
        val = [min(0.99, test_acc - 0.15 * math.exp(-s / (m.steps / 5))) for s in steps]
        outputs = lay.train_outputs(m.name)
        settings = config.training_settings(cfg.train, m)
        metrics = records.Metrics(
            model=m.name,
            arch=m.arch,
            test_accuracy=test_acc,
            val_accuracy=test_acc + 0.004,
            best_step=steps[-1],
            per_class_accuracy=per_class,
            confusion_matrix=conf.tolist(),
            curves=records.Curves(step=steps, train_loss=loss, val_accuracy=val),
            params=int(w.size + b.size),
            weight_bytes=int((w.size + b.size) * 4),
            train_seconds=12.5 + 60 * k,
            steps_per_second=m.steps / (12.5 + 60 * k),
            steps=m.steps,
            split=records.SplitSizes(train=4000, val=1000, test=len(truth)),
            device="CPU",
            tinygrad_version="0.14.0",
            config=records.plain(settings),
            config_hash=config.settings_hash(settings),
            created="2025-01-02T03:04:05+00:00",
            drawn_test=drawn_figures(w, b, mnist),
        )
        records.write(outputs.metrics, metrics)
        wrong = np.nonzero(pred != truth)[0]
        mis = records.Misclassified(
            indices=wrong.tolist(), labels=truth[wrong].tolist(), predictions=pred[wrong].tolist()
        )
        records.write(outputs.misclassified, mis)
        # the fake runtime's weights: raw float32 W (784 x 10) then b (10), not safetensors
        blob = np.concatenate([w.ravel(), b]).astype("<f4").tobytes()
        blobs = {
            "f32": blob,
            "f16": np.frombuffer(blob, "<f4").astype("<f2").tobytes(),
            "int8": bytes(len(blob) // 4),
        }
        wdir = lay.webgpu_dir(m.name)
        forms = []
        for form, data in blobs.items():
            (wdir / f"weights.{form}.bin").parent.mkdir(parents=True, exist_ok=True)
            (wdir / f"weights.{form}.bin").write_bytes(data)
            accuracy = 0.1 if form == "int8" else test_acc
            forms.append(
                records.Form(
                    form=form,
                    file=f"weights.{form}.bin",
                    bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    validation_accuracy=accuracy,
                    test_accuracy=accuracy,
                    max_abs_weight_error=0.0,
                )
            )
        (wdir / "cpu.wasm").write_bytes(wasmkit.MODULE)
        manifest = records.Manifest(
            format=records.MANIFEST_FORMAT,
            name=m.name,
            model=records.ModelInfo(
                arch=m.arch,
                widths=list(m.widths),
                normalize=records.Normalize(0.0, 1.0),
                label=m.arch.upper(),
                description=f"the {m.arch} of the site tests",
                widths_mean="its widths",
            ),
            input=records.TensorSpec(shape=[1, 1, 28, 28], dtype="float32", buffer="input"),
            output=records.TensorSpec(shape=[1, 10], dtype="float32", buffer="output"),
            buffers=[],
            kernels=[],
            weights={},
            skipped_state=[],
            forms=forms,
            default_form="f32",
            evaluation=records.Evaluation(
                validation_images=1000,
                test_images=len(truth),
                tolerance_points=0.05,
                source_weights_sha256="",
            ),
            cpu=wasmkit.cpu_record(),
        )
        records.write(lay.manifest(m.name), manifest)

    site_src = tmp / "site_src"
    shutil.copytree(ROOT / "site_src", site_src)
    shutil.copyfile(FAKE_RUNTIME, site_src / "runtime.js")
    return site.Paths(layout=lay, templates=ROOT / "templates", site_src=site_src, cache=cfg.cache_dir())
