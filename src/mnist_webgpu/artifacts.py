"""Where each stage's outputs live, and which settings make them what they are.

Kept free of tinygrad so doit can plan tasks without importing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import Config, training_settings
from .paths import MODELS

# The modules whose code decides a trained model: editing one retrains (and reruns sweep trials).
TRAINING_CODE = ("models", "train", "data", "idx", "config", "artifacts", "progress", "files", "speed", "pen")


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
    """Everything that decides one model's trained weights (hashed into metrics' config_hash)."""
    return training_settings(cfg.train, cfg.model(name))
