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

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from . import artifacts, config, files, paths
from .config import Config, Trial
from .errors import PipelineError

FORMAT = 1
# The modules whose code decides a trial's result: editing one reruns the trials.
TRIAL_CODE = (*artifacts.TRAINING_CODE, "sweep_config")
PACKAGE_DIR = Path(__file__).resolve().parent


class SweepError(PipelineError):
    """A sweep input or result is missing or malformed; the message names the file."""


def trial_path(trial: Trial) -> Path:
    return paths.SWEEP / trial.model / f"{trial.id}.json"


def settings_hash(cfg: Config, trial: Trial) -> str:
    return config.settings_hash(config.training_settings(cfg.train, trial.config))


def code_hash() -> str:
    h = hashlib.sha256()
    for m in TRIAL_CODE:
        h.update(m.encode() + b"\0" + (PACKAGE_DIR / f"{m}.py").read_bytes())
    return h.hexdigest()


def plain(value: Any) -> Any:
    """A config value as JSON/TOML data (dataclasses become tables, tuples lists)."""
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return list(value) if isinstance(value, tuple) else value


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
        "overrides": {k: plain(v) for k, v in trial.overrides.items()},
        **result,
        "settings_hash": settings_hash(cfg, trial),
        "code_hash": code_hash(),
    }
    path = trial_path(trial)
    files.write_json(path, row)
    return path


def merge(cfg: Config, sweep_dir: Path = paths.SWEEP) -> list[dict[str, Any]]:
    """Rows of the previous results file, updated by every trial file on disk."""
    results = sweep_dir / "results.json"
    rows: dict[str, dict] = {}
    if results.exists():
        old = _read(results)
        if old.get("format") != FORMAT or not isinstance(old.get("rows"), list):
            raise SweepError(f"{results}: not a format-{FORMAT} results file; move it aside to rebuild it")
        rows = {r["trial"]: r for r in old["rows"]}
    for path in sorted(sweep_dir.glob("*/*.json")):
        row = _read(path)
        row.pop("curves", None)  # the trial file keeps them; the summary does not need them
        rows[row["trial"]] = row
    current = {t.id for t in cfg.trials}
    for row in rows.values():
        row["current"] = row["trial"] in current
    return sorted(
        rows.values(), key=lambda r: (r["model"], -r["val_accuracy"], r["train_seconds"], r["trial"])
    )


def write_results(rows: list[dict], target: Path = paths.SWEEP_RESULTS) -> bool:
    """Write atomically, and only when something changed (the site depends on this file)."""
    text = json.dumps({"format": FORMAT, "rows": rows}, indent=1) + "\n"
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return False
    files.write_text(target, text)
    return True


def load_results(path: Path = paths.SWEEP_RESULTS) -> list[dict[str, Any]]:
    data = _read(path)
    if data.get("format") != FORMAT or not isinstance(data.get("rows"), list):
        raise SweepError(f"{path}: not a format-{FORMAT} results file")
    return data["rows"]
