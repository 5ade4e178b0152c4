"""Sweep results: one file per finished trial, merged into build/sweep/results.json.

A trial task writes build/sweep/<model>/<trial>.json atomically when it finishes; that
file is both its doit target and its "done" mark, so a killed sweep loses only the
trials still running. The `sweep` step merges every trial file into results.json:

    {"format": 1, "rows": [row, ...]}    rows sorted by model, then best validation first

A row: model, trial, where (its place in config.toml), overrides (what the sweep set),
hyperparameters (what the trainer used, read back from it), val_accuracy, best_step,
train_seconds, steps_per_second, params, split, device, tinygrad_version, date,
settings_hash, code_hash, current (whether config.toml still has this trial).

Rows of trials no longer in the config are kept (current = false): results accumulate
and are never lost to a config edit. Reports rank only the current trials, which share
one data split and so compare fairly. Kept free of tinygrad so doit can plan with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from . import files, schemas, sources
from .config import Config, Trial, settings_hash, training_settings
from .errors import PipelineError
from .layout import PROJECT

FORMAT = 1


class SweepError(PipelineError):
    """A sweep input or result is missing or malformed; the message names the file."""


def trial_path(trial: Trial) -> Path:
    return PROJECT.trial_result(trial.model, trial.id)


def trial_settings_hash(cfg: Config, trial: Trial) -> str:
    return settings_hash(training_settings(cfg.train, trial.config))


def code_hash() -> str:
    """The trainer's code and everything it imports (and the [sweep] rules): editing any reruns trials."""
    return sources.digest("train", "config")


def find_trial(cfg: Config, trial_id: str) -> Trial:
    for t in cfg.trials:
        if t.id == trial_id:
            return t
    known = ", ".join(t.id for t in cfg.trials) or "none: config.toml has no [sweep] section"
    raise SweepError(f"{cfg.path}: sweep: no trial {trial_id} (known: {known})")


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SweepError(f"{path}: unreadable sweep result ({exc}); delete it to rebuild it") from None


def trial_done(path: Path, want_settings: str, want_code: str) -> bool:
    """doit's up-to-date check: the file itself, not doit's database, says a trial is done,
    so trials finished before a kill count even if doit never recorded them."""
    try:
        row = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return row.get("settings_hash") == want_settings and row.get("code_hash") == want_code


def write_trial(cfg: Config, trial: Trial, result: dict[str, Any]) -> Path:
    row = {
        "model": trial.model,
        "trial": trial.id,
        "where": trial.where,
        "overrides": {k: schemas.plain(v) for k, v in trial.overrides.items()},
        **result,
        "settings_hash": trial_settings_hash(cfg, trial),
        "code_hash": code_hash(),
    }
    path = trial_path(trial)
    schemas.write(path, schemas.parse(schemas.TrialResult, row, str(path)))
    return path


def merge(cfg: Config, sweep_dir: Path = PROJECT.sweep_dir) -> list[dict[str, Any]]:
    """Rows of the previous results file, updated by every trial file on disk."""
    results = sweep_dir / "results.json"
    rows: dict[str, dict] = {}
    if results.exists():
        rows = {r["trial"]: r for r in load_results(results)}
    for path in sorted(sweep_dir.glob("*/*.json")):
        row = schemas.plain(schemas.parse(schemas.TrialResult, _read(path), str(path)))
        row.pop("curves", None)  # the trial file keeps them; the summary does not need them
        rows[row["trial"]] = row
    current = {t.id for t in cfg.trials}
    for row in rows.values():
        row["current"] = row["trial"] in current
    return sorted(
        rows.values(), key=lambda r: (r["model"], -r["val_accuracy"], r["train_seconds"], r["trial"])
    )


def write_results(rows: list[dict], target: Path = PROJECT.sweep_results) -> bool:
    """Write atomically, and only when something changed (the site depends on this file)."""
    text = json.dumps({"format": FORMAT, "rows": rows}, indent=1) + "\n"
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return False
    files.write_text(target, text)
    return True


def load_results(path: Path = PROJECT.sweep_results) -> list[dict[str, Any]]:
    """The rows of a results file, each checked against the trial schema."""
    results = schemas.read(schemas.SweepResults, path)
    if results.format != FORMAT:
        raise SweepError(f"{path}: not a format-{FORMAT} results file; move it aside to rebuild it")
    return [schemas.plain(r) for r in results.rows]
