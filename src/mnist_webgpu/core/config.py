"""Load config.toml and validate it into frozen dataclasses: the one validated place.

Every mistake becomes one ConfigError line naming the file, the dotted key and what
was expected, so `doit` can stop before any task runs. The sections live in
sections.py, the checking machinery in rules.py; the [sweep] section is the sweep package's
(mnist_webgpu.sweep.plan), read from the same file's tables.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from mnist_webgpu.core import rules
from mnist_webgpu.core.rules import ConfigError
from mnist_webgpu.core.sections import (
    CACHE_ENV,
    CONFIG_ENV,
    DEFAULT_CONFIG,
    MAX_BACKOFF_TOTAL,
    MODEL_NAME,
    NOT_TRAINING_INPUTS,
    Augment,
    Config,
    DataConfig,
    DeployConfig,
    ExportConfig,
    ModelConfig,
    ServeConfig,
    SiteConfig,
    TrainConfig,
    check_model,
    settings_hash,
    training_settings,
)

__all__ = [
    "CACHE_ENV",
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "NOT_TRAINING_INPUTS",
    "Augment",
    "Config",
    "ConfigError",
    "DataConfig",
    "DeployConfig",
    "ExportConfig",
    "ModelConfig",
    "ServeConfig",
    "SiteConfig",
    "TrainConfig",
    "config_path",
    "load",
    "parse",
    "settings_hash",
    "training_settings",
]


def parse(text: str, path: Path) -> Config:
    """Validate TOML text (read from `path`, named as given in messages) into a Config."""
    err = rules.error_factory(path)
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
        built[key] = rules.build(cls, table, f"{key}.", err)

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
        models.append(rules.build(ModelConfig, table, f"models.{name}.", err, name=name))

    cfg = Config(path=Path(path).resolve(), models=tuple(models), tables=raw, named=str(path), **built)
    if cfg.site.default_model and cfg.site.default_model not in cfg.model_names:
        raise err("site.default_model", f"one of {', '.join(cfg.model_names)}", cfg.site.default_model)
    waits = cfg.data.backoff_seconds * (2**cfg.data.retries - 1)
    if waits > MAX_BACKOFF_TOTAL:
        raise err(
            "data.backoff_seconds",
            f"at most {MAX_BACKOFF_TOTAL} s of waiting in all over data.retries = {cfg.data.retries} "
            f"(it doubles after each retry: {waits:g} s)",
            cfg.data.backoff_seconds,
        )
    if cfg.train.train_limit and cfg.train.train_limit <= cfg.train.val_size:
        raise err("train.train_limit", "0 or more images than train.val_size", cfg.train.train_limit)
    for m in cfg.models:
        check_model(cfg.train, m, lambda key, m=m: f"models.{m.name}.{key}", err)
    return cfg


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
