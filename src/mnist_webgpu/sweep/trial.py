"""One sweep trial: the trainer's fit, scored on the validation split only (the test set stays unread)."""

from __future__ import annotations

import datetime
import importlib.metadata
from typing import Any

from mnist_webgpu.core.config import Config, ModelConfig
from mnist_webgpu.data import mnist as data
from mnist_webgpu.drawings import pad as drawings
from mnist_webgpu.train.trainer import check_data, check_device, effective_hyperparameters, fit


def run(cfg: Config, mc: ModelConfig, label: str, on_eval=None) -> dict[str, Any]:
    """One sweep trial: train and score on the validation split only; the test set stays unread."""
    check_data(cfg.cache_dir())
    device = check_device()
    mnist = data.load(cfg.cache_dir())
    drawings.ensure(cfg, mnist)  # a sweep worker on another machine may have no drawings stage
    fitted = fit(cfg, mc, label, mnist, device, on_eval)
    return {
        "val_accuracy": fitted.val_accuracy,
        "best_step": fitted.best_step,
        "curves": fitted.curves,
        "hyperparameters": effective_hyperparameters(fitted),
        "params": fitted.params,
        "train_seconds": round(fitted.train_seconds, 3),
        "steps_per_second": round(len(fitted.lr_fed) / fitted.train_seconds, 3),
        "split": {"train": fitted.sizes.n_train, "val": fitted.sizes.n_val},
        "device": fitted.device,
        "tinygrad_version": importlib.metadata.version("tinygrad"),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
