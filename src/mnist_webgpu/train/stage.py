"""The train stage: fit one model, score it once on the test set and on the drawings as the page
answers them, and write its weights, test mistakes and metrics (last: they mark the set complete).

Import this module only after the device is chosen (`DEV` is read when tinygrad loads).
"""

from __future__ import annotations

import datetime
import importlib.metadata

import numpy as np
from safetensors.numpy import save_file

from mnist_webgpu.core import faults, files, layout, records
from mnist_webgpu.core.config import Config, settings_hash, training_settings
from mnist_webgpu.data import mnist as data
from mnist_webgpu.drawings import preprocess
from mnist_webgpu.train import verdict
from mnist_webgpu.train.trainer import Fitted, check_data, check_device, fit


def remove_outputs(outputs: layout.TrainOutputs) -> None:
    """Metrics first: from here until the new metrics land, the set is visibly incomplete."""
    for path in reversed(outputs.all()):
        path.unlink(missing_ok=True)


def confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    matrix = np.zeros((10, 10), np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


def run(cfg: Config, name: str, log=print) -> records.Metrics:
    """Train model `name` from scratch; write its three outputs; return the metrics."""
    mc = cfg.model(name)
    check_data(cfg.cache_dir())
    device = check_device()
    outputs = layout.PROJECT.train_outputs(name)
    remove_outputs(outputs)
    mnist = data.load(cfg.cache_dir())
    fitted = fit(cfg, mc, name, mnist, device)
    trainer, sizes = fitted.trainer, fitted.sizes
    best_accuracy, best_step, train_seconds = (
        fitted.mnist_val_accuracy,
        fitted.best_step,
        fitted.train_seconds,
    )
    curves = fitted.curves
    # the test set is read here, once, after the checkpoint is chosen
    test_x, test_y = preprocess.upright(mnist.test_x[: sizes.n_test]), mnist.test_y[: sizes.n_test]

    trainer.restore(fitted.best_weights)
    test_logits = trainer.logits(test_x)  # one pass: the digits named here, the page's answers below
    predicted = test_logits[:, :10].argmax(1)
    matrix = confusion(test_y, predicted)
    per_class = [float(matrix[c, c] / row) if (row := matrix[c].sum()) else None for c in range(10)]
    wrong = np.flatnonzero(predicted != test_y)
    rule, drawn_val, drawn_test, pen_val = judge_drawings(fitted, mnist, test_logits)
    settings = training_settings(cfg.train, mc)
    params = fitted.params
    metrics = records.Metrics(
        model=name,
        arch=mc.arch,
        test_accuracy=float((predicted == test_y).mean()),
        val_accuracy=best_accuracy,
        best_step=best_step,
        per_class_accuracy=per_class,
        confusion_matrix=matrix.tolist(),
        curves=records.Curves(**curves),
        params=params,
        weight_bytes=params * 4,
        train_seconds=round(train_seconds, 3),
        steps_per_second=round(mc.steps / train_seconds, 3),
        steps=mc.steps,
        split=records.SplitSizes(train=sizes.n_train, val=sizes.n_val, test=sizes.n_test),
        device=device,
        tinygrad_version=importlib.metadata.version("tinygrad"),
        config=records.plain(settings),
        config_hash=settings_hash(settings),
        created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        decline=rule,
        drawn_val=drawn_val,
        drawn_test=drawn_test,
        pen_val=pen_val,
    )
    with files.atomic_path(outputs.weights) as tmp:
        # through numpy, not tinygrad's safe_save: that one stages the file on the CPU device,
        # which needs a C compiler even when training ran on a GPU
        save_file({k: v.numpy() for k, v in trainer.state.items()}, str(tmp))
    records.write(
        outputs.misclassified,
        records.Misclassified(
            indices=wrong.tolist(), labels=test_y[wrong].tolist(), predictions=predicted[wrong].tolist()
        ),
    )
    records.write(outputs.metrics, metrics)  # last: its presence means the set is complete
    faults.pause(f"train:{name}")  # tests kill here: done, but before doit records it
    log(
        f"{name}: test accuracy {metrics.test_accuracy:.2%}, "
        f"best val {best_accuracy:.2%} at step {best_step}, "
        f"{train_seconds:.0f} s ({metrics.steps_per_second:.2f} steps/s) on {device}; "
        f"drawn test digits read {drawn_test.accuracy:.2%}, declined {drawn_test.declined:.2%}; "
        f"non-digits declined {drawn_test.nondigits_declined:.2%}; pen digits of "
        f"{pen_val.writers} validation writers read {pen_val.accuracy:.2%} (worst writer "
        f"{pen_val.worst_accuracy:.2%}), declined {pen_val.declined:.2%}"
    )
    return metrics


def judge_drawings(
    fitted: Fitted, mnist: data.Mnist, test_logits: np.ndarray
) -> tuple[records.Decline | None, records.Drawn, records.Drawn, records.Handwriting]:
    """The decline rule, set on validation drawings; then the page's answers on validation and
    (once, for the report) test drawings, with the weights the model ships. `test_logits`: the
    test set's, already computed for its accuracy."""
    trainer, drawn, sizes = fitted.trainer, fitted.drawn, fitted.sizes
    val_logits = {
        "mnist": trainer.logits(fitted.val_x),
        "drawn": trainer.logits(drawn.val_digits),
        "pen": trainer.logits(drawn.val_pen),
        "negatives": trainer.logits(drawn.val_negatives),
    }
    rule = None
    if trainer.model.outputs() > 10:
        rule = verdict.calibrate(
            np.concatenate(list(val_logits.values())),
            np.concatenate(
                [
                    mnist.train_y[sizes.val],
                    drawn.val_labels,
                    drawn.val_pen_labels,
                    np.full(len(drawn.val_negatives), verdict.NOT_A_DIGIT),
                ]
            ).astype(np.int64),
            [val_logits["drawn"], val_logits["pen"]],
        )
    pen_val = verdict.handwriting(rule, val_logits["pen"], drawn.val_pen_labels, drawn.val_pen_writers)
    on_val = verdict.figures(
        rule,
        (val_logits["drawn"], drawn.val_labels),
        val_logits["mnist"],
        (val_logits["negatives"], drawn.val_kinds),
    )
    # the test drawings, for the report: nothing above looked at them
    on_test = verdict.figures(
        rule,
        (trainer.logits(drawn.test_digits), drawn.test_labels),
        test_logits,
        (trainer.logits(drawn.test_negatives), drawn.test_kinds),
    )
    return rule, on_val, on_test, pen_val
