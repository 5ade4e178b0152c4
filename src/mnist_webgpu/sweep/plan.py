"""The [sweep] section: per model, a grid and/or a list of trials, or a search.

    [sweep]
    storage = "postgresql://user@host/sweeps"                 # optional: any Optuna RDB URL
    [sweep.mlp]
    grid = { lr = [0.001, 0.003], batch_size = [64, 128] }   # every combination
    trials = [{ optimizer = "sgd", lr = 0.05 }]               # and these, one each
    [sweep.cnn]                                               # or: n_trials sampled by TPE
    search = { lr = { low = 1e-3, high = 1e-2, log = true }, batch_size = [64, 128, 256] }
    n_trials = 24

Each trial is the model's [models.<name>] section with those keys replaced (a table
value such as `augment` is merged into the model's table), validated by the same rules
as the section itself, so a bad value reads e.g. `sweep.mlp.grid.lr[1]: expected a
number > 0, got -1`. A trial's id hashes its effective training settings: it stays the
same (and its doit task stays up to date) exactly as long as what it would train does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import typing
from dataclasses import dataclass
from typing import Any

from mnist_webgpu.core.rules import ConfigError, error_factory, field_value
from mnist_webgpu.core.sections import ModelConfig, TrainConfig, check_model, settings_hash, training_settings
from mnist_webgpu.models import zoo


@dataclass(frozen=True)
class Trial:
    """One point of a [sweep.<model>] grid or list: the model's section with some keys replaced."""

    model: str  # the [models.<name>] section it starts from
    id: str  # '<model>-<hash of its effective training settings>': stable while they are
    overrides: dict[str, Any]  # the keys the sweep sets, validated, as the model config holds them
    config: ModelConfig  # the effective section: what `train` is given
    where: str  # where the trial comes from in the file, for messages


SECTION_KEYS = ("grid", "trials", "search", "n_trials", "prune_startup_trials", "prune_warmup_steps")
TOP_KEYS = ("storage", "heartbeat_seconds")
RANGE_KEYS = ("low", "high", "log", "step")
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
    zoo.check_model(mc, cfg.train.outputs, located, err)
    values = {k: v for k, (v, _) in overrides.items()}
    return Trial(model=model.name, id=trial_id(cfg.train, mc), overrides=values, config=mc, where=where)


def _model_trials(name: str, table: dict, base_table: dict, cfg, err) -> list[Trial]:
    prefix = f"sweep.{name}"
    model = cfg.model(name)
    trials: list[Trial] = []

    grid = table.get("grid")
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

    listed = table.get("trials")
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


# --- search: TPE samples n_trials points of a space ---------------------------------------------


@dataclass(frozen=True)
class Param:
    """One searched knob: `lr`, or `augment.rotate` (one field of a table-valued key)."""

    name: str  # the Optuna parameter name
    kind: str  # "float", "int" or "categorical"
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    # Optuna's choices (None, bool, int, float or str): lists and tables travel as JSON text
    choices: tuple[Any, ...] = ()

    def spec(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v not in (None, (), False)}


@dataclass(frozen=True)
class Search:
    model: str
    params: tuple[Param, ...]
    n_trials: int
    prune_startup_trials: int  # MedianPruner: compare against at least this many finished trials
    prune_warmup_steps: int  # and never prune a trial before this training step
    key: str  # hash of the space and the model's base settings: a new key is a new study


@dataclass(frozen=True)
class Plan:
    """The whole [sweep] section."""

    trials: tuple[Trial, ...] = ()  # grid and listed trials of every model
    searches: tuple[Search, ...] = ()
    storage: str = ""  # '' = SQLite under build/sweep/ (study.default_storage)
    heartbeat_seconds: int = 10

    def models(self) -> list[str]:
        names = [t.model for t in self.trials] + [s.model for s in self.searches]
        return list(dict.fromkeys(names))


def choice(value: Any) -> Any:
    """A validated value as an Optuna categorical choice: scalars stay, the rest is JSON text."""
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.dumps(list(value) if isinstance(value, tuple) else value, sort_keys=True)


def unchoice(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def _number(key: str, raw: Any, kind: type, base_table: dict, where: str, err, sub: str | None) -> Any:
    """A bound, checked by the rules of the key itself (so `lr.low = -1` reads like `lr = -1`)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise err(where, "a number", raw)
    if kind is int and not isinstance(raw, int):
        raise err(where, f"a whole number ({key} is one)", raw)
    _value(key, {sub: raw} if sub else raw, base_table, where, err)
    return raw


def _param(key: str, sub: str | None, spec: Any, kind: type, base_table: dict, where: str, err) -> Param:
    name = f"{key}.{sub}" if sub else key
    if isinstance(spec, list):
        if not spec:
            raise err(where, "a non-empty list of values to try", spec)
        choices = []
        for i, v in enumerate(spec):
            checked = _value(key, {sub: v} if sub else v, base_table, f"{where}[{i}]", err)
            choices.append(choice(getattr(checked, sub) if sub else checked))
        if len(set(choices)) != len(choices):
            raise err(where, "distinct values", spec)
        return Param(name, "categorical", choices=tuple(choices))
    if not isinstance(spec, dict) or "low" not in spec or "high" not in spec:
        raise err(where, "a list of values or a range { low = ..., high = ... }", spec)
    for k in spec:
        if k not in RANGE_KEYS:
            raise ConfigError(
                err.file_prefix + f"{where}.{k}: unknown key (known keys: {', '.join(RANGE_KEYS)})"
            )
    if kind not in (int, float):
        raise err(where, f"a list of values ({name} is not a number)", spec)
    low = _number(key, spec["low"], kind, base_table, f"{where}.low", err, sub)
    high = _number(key, spec["high"], kind, base_table, f"{where}.high", err, sub)
    if not low < high:
        raise err(f"{where}.high", f"more than low ({low})", high)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise err(f"{where}.log", "true or false", log)
    if log and low <= 0:
        raise err(f"{where}.low", "a number > 0 (log = true)", low)
    step = spec.get("step")
    if step is not None and (isinstance(step, bool) or not isinstance(step, kind) or step <= 0 or log):
        raise err(f"{where}.step", f"a positive {'whole ' if kind is int else ''}number, without log", step)
    return Param(name, "int" if kind is int else "float", low, high, log, step)


def _model_search(name: str, table: dict, base_table: dict, cfg, err) -> Search:
    prefix = f"sweep.{name}"
    space = table["search"]
    if not isinstance(space, dict) or not space:
        raise err(f"{prefix}.search", "a table of key = [values] or { low = ..., high = ... }", space)
    hints = typing.get_type_hints(ModelConfig)
    params = []
    for key, spec in space.items():
        where = f"{prefix}.search.{key}"
        _check_key(key, where, err)
        kind = hints[key]
        if dataclasses.is_dataclass(kind) and isinstance(spec, dict):
            sub_hints = typing.get_type_hints(kind)
            for sub, sub_spec in spec.items():
                if sub not in sub_hints:
                    known = ", ".join(sub_hints)
                    raise ConfigError(err.file_prefix + f"{where}.{sub}: unknown key (known keys: {known})")
                params.append(_param(key, sub, sub_spec, sub_hints[sub], base_table, f"{where}.{sub}", err))
        else:
            params.append(_param(key, None, spec, kind, base_table, where, err))
    n_trials = table.get("n_trials")
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or not 1 <= n_trials <= MAX_TRIALS:
        raise err(f"{prefix}.n_trials", f"a whole number of trials from 1 to {MAX_TRIALS}", n_trials)
    model = cfg.model(name)
    startup = table.get("prune_startup_trials", 4)
    if isinstance(startup, bool) or not isinstance(startup, int) or startup < 0:
        raise err(f"{prefix}.prune_startup_trials", "a whole number >= 0", startup)
    warmup = table.get("prune_warmup_steps", model.steps // 3)
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise err(f"{prefix}.prune_warmup_steps", "a whole number of training steps >= 0", warmup)
    base = training_settings(cfg.train, model)
    key = settings_hash({"space": [p.spec() for p in params], "base": base})[:8]
    return Search(name, tuple(params), n_trials, startup, warmup, key)


def search_trial(cfg, name: str, values: dict[str, Any], where: str) -> Trial:
    """The trial a search drew: `values` maps Param names to Optuna's values; validated here.

    Raises ConfigError when the draw breaks a rule that spans keys (warmup_steps >= steps).
    """
    model = cfg.model(name)
    err = error_factory(cfg.path)
    raw: dict[str, Any] = {}
    for pname, value in values.items():
        key, _, sub = pname.partition(".")
        if sub:
            raw.setdefault(key, {})[sub] = unchoice(value)
        else:
            raw[key] = unchoice(value)
    base_table = {k: dataclasses.asdict(v) for k in raw if dataclasses.is_dataclass(v := getattr(model, k))}
    overrides = {k: (_value(k, v, base_table, f"{where}.{k}", err), f"{where}.{k}") for k, v in raw.items()}
    return _trial(model, overrides, where, cfg, err)


def _top_level(raw: dict, err) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "storage" in raw:
        if not isinstance(raw["storage"], str):
            raise err("sweep.storage", "an Optuna storage URL such as sqlite:///sweep.db", raw["storage"])
        out["storage"] = raw["storage"]
    if "heartbeat_seconds" in raw:
        beat = raw["heartbeat_seconds"]
        if isinstance(beat, bool) or not isinstance(beat, int) or not 1 <= beat <= 600:
            raise err("sweep.heartbeat_seconds", "a whole number of seconds from 1 to 600", beat)
        out["heartbeat_seconds"] = beat
    return out


def of(cfg) -> Plan:
    """The [sweep] section of a loaded config: every mistake one ConfigError line, as for the rest."""
    tables = cfg.tables or {}
    return parse(tables.get("sweep", {}), tables.get("models", {}), cfg, error_factory(cfg.named or cfg.path))


def parse(raw: Any, models_table: dict, cfg, err) -> Plan:
    """The [sweep] section, validated against the already-built config."""
    if not isinstance(raw, dict):
        raise err("sweep", "a table of [sweep.<model>] tables", raw)
    trials: list[Trial] = []
    searches: list[Search] = []
    for name, table in raw.items():
        if name in TOP_KEYS:
            continue
        if name not in cfg.model_names:
            models = ", ".join(cfg.model_names)
            expect = f"the name of a model in [models] ({models}) or one of {', '.join(TOP_KEYS)}"
            raise err(f"sweep.{name}", expect, name)
        prefix = f"sweep.{name}"
        if not isinstance(table, dict):
            raise err(prefix, "a table with grid and/or trials, or search and n_trials", table)
        for key in table:
            if key not in SECTION_KEYS:
                known = ", ".join(SECTION_KEYS)
                raise ConfigError(err.file_prefix + f"{prefix}.{key}: unknown key (known keys: {known})")
        if "search" in table:
            for other in ("grid", "trials"):
                if other in table:
                    raise ConfigError(
                        err.file_prefix
                        + f"{prefix}.{other}: a section has either search or grid/trials, not both"
                    )
            searches.append(_model_search(name, table, models_table[name], cfg, err))
            continue
        for key in ("n_trials", "prune_startup_trials", "prune_warmup_steps"):
            if key in table:
                raise ConfigError(
                    err.file_prefix + f"{prefix}.{key}: only a search has it (add search = {{...}})"
                )
        if not table:
            raise err(prefix, "a grid and/or a list of trials, or a search", table)
        trials += _model_trials(name, table, models_table[name], cfg, err)
    return Plan(tuple(trials), tuple(searches), **_top_level(raw, err))
