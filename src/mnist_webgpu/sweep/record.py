"""The sweep's committed record: sweeps/results.json, one row per finished Optuna trial.

    {"format": 2, "rows": [row, ...]}    rows sorted by model, finished first, best validation first

A row: model, trial (<model>-<settings hash>), study, number, state (complete, pruned,
failed), where (its place in config.toml), overrides (what the sweep set), sampled
(Optuna's parameters), hyperparameters (what the trainer used, read back from it; for a
pruned trial, what it asked for), val_accuracy (a pruned trial: its best so far),
best_step, steps_done, train_seconds, steps_per_second, params, split, device,
tinygrad_version, date, settings_hash, worker, current (whether config.toml still
asks for this trial).

The record is kept in the repository: `doit build` renders the sweep page from it
without training; `doit sweep` merges the storage's trials into it. Rows of trials no
longer in the config stay (current = false) and are not ranked. Kept free of tinygrad
and Optuna so the site stage can read it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mnist_webgpu.core import files, records
from mnist_webgpu.core.config import Config, settings_hash, training_settings
from mnist_webgpu.core.errors import PipelineError
from mnist_webgpu.core.records import plain
from mnist_webgpu.sweep import plan
from mnist_webgpu.sweep.plan import Trial

FORMAT = 2
# what a finished trial keeps of sweep.trial.run's result (its curve is the trial's intermediate values)
RESULT_KEYS = (
    "val_accuracy",
    "best_step",
    "hyperparameters",
    "params",
    "train_seconds",
    "steps_per_second",
    "split",
    "device",
    "tinygrad_version",
    "date",
)
STATES = ("complete", "pruned", "failed")


class SweepError(PipelineError):
    """A sweep input, storage or result is missing or malformed; the message names it."""


def trial_settings_hash(cfg: Config, trial: Trial) -> str:
    return settings_hash(training_settings(cfg.train, trial.config))


def row(model: str, study: str, t) -> dict[str, Any]:
    """The record row of a finished Optuna trial (a FrozenTrial, duck-typed: no Optuna import)."""
    a = t.user_attrs
    state = t.state.name.lower()
    state = {"fail": "failed"}.get(state, state)
    curve = t.intermediate_values
    steps_done = a.get("steps_done") or (max(curve) if curve else 0)
    seconds = a.get("train_seconds", 0.0)
    best_step = a.get("best_step") or (max(curve, key=lambda s: (curve[s], -s)) if curve else 0)
    out = {
        "model": model,
        "trial": a["trial"],
        "study": study,
        "number": t.number,
        "state": state,
        "where": a.get("where", ""),
        "overrides": a.get("overrides", {}),
        "sampled": dict(t.params),
        "hyperparameters": a.get("hyperparameters") or a.get("requested", {}),
        "val_accuracy": t.value if state == "complete" else max(curve.values(), default=0.0),
        "best_step": best_step,
        "steps_done": steps_done,
        "train_seconds": seconds,
        "steps_per_second": a.get("steps_per_second") or (round(steps_done / seconds, 3) if seconds else 0.0),
        "params": a.get("params"),
        "split": a.get("split", {}),
        "device": a.get("device", ""),
        "tinygrad_version": a.get("tinygrad_version", ""),
        "date": a.get("date", ""),
        "settings_hash": a.get("settings_hash", ""),
        "worker": a.get("worker", ""),
    }
    if state == "failed":
        out["error"] = a.get("error", "")
    return plain(records.parse(records.TrialResult, out, f"trial #{t.number} of study {study}"))


def _key(r: dict) -> tuple:
    return (r["study"], r["number"], r["trial"], r["date"])


def is_current(cfg: Config, r: dict) -> bool:
    asked = plan.of(cfg)
    if ".search." in r["study"]:
        return r["study"] in {f"{s.model}.search.{s.key}" for s in asked.searches}
    return r["trial"] in {t.id for t in asked.trials}


def merge_rows(cfg: Config, old: list[dict], new: list[dict]) -> list[dict]:
    """The record's rows updated by the storage's: finished trials never change, so nothing is lost."""
    rows = {_key(r): r for r in old}
    rows.update({_key(r): r for r in new})
    for r in rows.values():
        r["current"] = is_current(cfg, r)
    return sorted(
        rows.values(),
        key=lambda r: (r["model"], STATES.index(r["state"]), -r["val_accuracy"], r["train_seconds"], _key(r)),
    )


def write_results(rows: list[dict], target: Path) -> bool:
    """Write atomically, and only when something changed (the site depends on this file)."""
    text = json.dumps({"format": FORMAT, "rows": rows}, indent=1) + "\n"
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return False
    files.write_text(target, text)
    return True


def load_results(path: Path) -> list[dict[str, Any]]:
    """The rows of a record, each checked against the trial schema."""
    results = records.read(records.SweepResults, path, "run `doit sweep`")
    if results.format != FORMAT:
        raise SweepError(f"{path}: not a format-{FORMAT} sweep record; move it aside and run `doit sweep`")
    return [plain(r) for r in results.rows]
