"""Where each stage's outputs live, and which settings make them what they are.

Kept free of tinygrad so doit can plan tasks without importing it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from .config import Config
from .paths import MODELS

# Not a training input: changing the accuracy bar must not retrain a model.
NOT_TRAINING_INPUTS = ("min_test_accuracy",)


def model_dir(cfg: Config, name: str) -> Path:
    return MODELS / name


def train_outputs(cfg: Config, name: str) -> dict[str, Path]:
    """The train stage's outputs for one model, in the order they are written (metrics last)."""
    out = model_dir(cfg, name)
    return {
        "weights": out / "weights.safetensors",
        "misclassified": out / "misclassified.json",
        "metrics": out / "metrics.json",
    }


def train_settings(cfg: Config, name: str) -> dict[str, Any]:
    """Everything that decides one model's trained weights: its section plus the [train] table."""
    settings = cfg.model(name).as_dict()
    for key in NOT_TRAINING_INPUTS:
        settings.pop(key)
    settings["train"] = dataclasses.asdict(cfg.train)
    return settings


def settings_hash(settings: dict[str, Any]) -> str:
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
