"""Where the compile stage reads and writes, and the config it depends on.

Free of tinygrad so doit's task definitions can import it without loading tinygrad
(whose device choice must be made by the stage process itself).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from . import artifacts, forms
from .config import Config
from .paths import WEBGPU

MANIFEST = "manifest.json"


def weights_path(cfg: Config, name: str) -> Path:
    """The train stage's output for this model."""
    return artifacts.train_outputs(cfg, name)["weights"]


def webgpu_dir(cfg: Config, name: str) -> Path:
    return WEBGPU / name


def outputs(cfg: Config, name: str) -> list[Path]:
    out = webgpu_dir(cfg, name)
    return [out / MANIFEST, *(out / forms.file_name(f) for f in cfg.export.forms)]


def inputs(cfg: Config, name: str) -> dict[str, Any]:
    """The config values an export depends on (doit reruns it when they change)."""
    # the training settings include [train], so the splits forms are scored on are covered
    return {"model": artifacts.train_settings(cfg, name), "export": dataclasses.asdict(cfg.export)}
