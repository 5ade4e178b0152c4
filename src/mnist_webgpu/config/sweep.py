"""The [sweep] section: per model, a grid and/or a list of trials over its hyperparameters.

    [sweep.mlp]
    grid = { lr = [0.001, 0.003], batch_size = [64, 128] }   # every combination
    trials = [{ optimizer = "sgd", lr = 0.05 }]               # and these, one each

Each trial is the model's [models.<name>] section with those keys replaced (a table
value such as `augment` is merged into the model's table), validated by the same rules
as the section itself, so a bad value reads e.g. `sweep.mlp.grid.lr[1]: expected a
number > 0, got -1`. A trial's id hashes its effective training settings: it stays the
same (and its doit task stays up to date) exactly as long as what it would train does.
"""

from __future__ import annotations

import dataclasses
import itertools
import typing
from dataclasses import dataclass
from typing import Any

from .rules import ConfigError, field_value
from .sections import ModelConfig, TrainConfig, check_model, settings_hash, training_settings


@dataclass(frozen=True)
class Trial:
    """One point of a [sweep.<model>] grid or list: the model's section with some keys replaced."""

    model: str  # the [models.<name>] section it starts from
    id: str  # '<model>-<hash of its effective training settings>': stable while they are
    overrides: dict[str, Any]  # the keys the sweep sets, validated, as the model config holds them
    config: ModelConfig  # the effective section: what `train` is given
    where: str  # where the trial comes from in the file, for messages


SECTION_KEYS = ("grid", "trials")
# A gate on the test set, not a training input: a sweep never looks at the test set.
NOT_SWEEPABLE = ("name", "min_test_accuracy")
MAX_TRIALS = 256  # a grid this large is almost surely a typo, and hours of training


def sweepable() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(ModelConfig) if f.name not in NOT_SWEEPABLE}


def trial_id(train: TrainConfig, mc: ModelConfig) -> str:
    return f"{mc.name}-{settings_hash(training_settings(train, mc))[:8]}"


def _check_key(key: str, where: str, err) -> None:
    if key in sweepable():
        return
    if key in NOT_SWEEPABLE:
        raise ConfigError(err.file_prefix + f"{where}: not a hyperparameter a sweep may vary")
    known = ", ".join(sorted(sweepable()))
    raise ConfigError(err.file_prefix + f"{where}: unknown key (known keys: {known})")


def _value(key: str, raw: Any, base_table: dict, where: str, err) -> Any:
    fields = sweepable()
    kind = typing.get_type_hints(ModelConfig)[key]
    if dataclasses.is_dataclass(kind) and isinstance(raw, dict):
        raw = {**base_table.get(key, {}), **raw}  # merge: `augment = { shift = 0 }` keeps rotate, scale
    return field_value(fields[key], kind, raw, where, err)


def _trial(model: ModelConfig, overrides: dict[str, tuple[Any, str]], where: str, cfg, err) -> Trial:
    """`overrides`: key -> (validated value, where that value is written)."""
    mc = dataclasses.replace(model, **{k: v for k, (v, _) in overrides.items()})

    def located(key: str) -> str:
        if key in overrides:
            return overrides[key][1]
        return f"models.{model.name}.{key} (in the trial {where})"

    check_model(cfg.train, mc, located, err)
    values = {k: v for k, (v, _) in overrides.items()}
    return Trial(model=model.name, id=trial_id(cfg.train, mc), overrides=values, config=mc, where=where)


def _model_trials(name: str, table: Any, base_table: dict, cfg, err) -> list[Trial]:
    prefix = f"sweep.{name}"
    if not isinstance(table, dict):
        raise err(prefix, "a table with grid and/or trials", table)
    for key in table:
        if key not in SECTION_KEYS:
            raise ConfigError(err.file_prefix + f"{prefix}.{key}: unknown key (known keys: grid, trials)")
    if not table:
        raise err(prefix, "a grid and/or a list of trials", table)
    model = cfg.model(name)
    trials: list[Trial] = []

    grid = table.get("grid", None)
    if grid is not None:
        if not isinstance(grid, dict):
            raise err(f"{prefix}.grid", "a table of key = [values]", grid)
        axes = []
        for key, values in grid.items():
            where = f"{prefix}.grid.{key}"
            _check_key(key, where, err)
            if not isinstance(values, list) or not values:
                raise err(where, "a non-empty list of values to try", values)
            axes.append(
                [
                    (key, _value(key, v, base_table, f"{where}[{i}]", err), f"{where}[{i}]")
                    for i, v in enumerate(values)
                ]
            )
        size = 1
        for axis in axes:
            size *= len(axis)
        if size > MAX_TRIALS:
            raise err(f"{prefix}.grid", f"at most {MAX_TRIALS} combinations", size)
        for combo in itertools.product(*axes):
            trials.append(_trial(model, {k: (v, w) for k, v, w in combo}, f"{prefix}.grid", cfg, err))

    listed = table.get("trials", None)
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(t, dict) for t in listed):
            raise err(f"{prefix}.trials", "a list of tables like { lr = 0.001 }", listed)
        for i, t in enumerate(listed):
            where = f"{prefix}.trials[{i}]"
            for key in t:
                _check_key(key, f"{where}.{key}", err)
            overrides = {
                k: (_value(k, v, base_table, f"{where}.{k}", err), f"{where}.{k}") for k, v in t.items()
            }
            trials.append(_trial(model, overrides, where, cfg, err))

    unique: dict[str, Trial] = {}
    for t in trials:  # the grid and the list may name the same trial: it runs once
        unique.setdefault(t.id, t)
    if len(unique) > MAX_TRIALS:
        raise err(prefix, f"at most {MAX_TRIALS} trials", len(unique))
    return list(unique.values())


def parse(raw: Any, models_table: dict, cfg, err) -> tuple[Trial, ...]:
    """Every trial of the [sweep] section, validated against the already-built config."""
    if not isinstance(raw, dict):
        raise err("sweep", "a table of [sweep.<model>] tables", raw)
    trials = []
    for name, table in raw.items():
        if name not in cfg.model_names:
            raise err(
                f"sweep.{name}", f"the name of a model in [models] ({', '.join(cfg.model_names)})", name
            )
        trials += _model_trials(name, table, models_table[name], cfg, err)
    return tuple(trials)
