"""Where the compile stage reads and writes, and the config it depends on.

Free of tinygrad so doit's task definitions can import it without loading tinygrad
(whose device choice must be made by the stage process itself).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from . import forms
from .config import Config

MANIFEST = "manifest.json"


def weights_path(cfg: Config, name: str) -> Path:
    """The train stage's output for this model."""
    return cfg.base_dir / "build" / "models" / name / "weights.safetensors"


def webgpu_dir(cfg: Config, name: str) -> Path:
    return cfg.base_dir / "build" / "webgpu" / name


def outputs(cfg: Config, name: str) -> list[Path]:
    out = webgpu_dir(cfg, name)
    return [out / MANIFEST, *(out / forms.file_name(f) for f in cfg.export.forms)]


def inputs(cfg: Config, name: str) -> dict[str, Any]:
    """The config values an export depends on (doit reruns it when they change)."""
    t = cfg.train
    return {
        "model": cfg.model(name).as_dict(),
        "export": dataclasses.asdict(cfg.export),
        "splits": {"val_size": t.val_size, "train_limit": t.train_limit, "test_limit": t.test_limit},
    }
