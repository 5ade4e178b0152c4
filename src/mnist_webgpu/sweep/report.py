"""From the sweep record's rows: per-model rankings, HYPERPARAMETERS.md, a config snippet.

Only current rows (trials config.toml still asks for) are shown: they share one data split.
Finished trials are ranked by validation accuracy; pruned and failed ones follow, marked.
A table's columns are every key some trial set plus every key whose used value differs
between trials, so a knob the trainer ignored appears as a column of identical values.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mnist_webgpu.core.config import Config, ConfigError, ModelConfig
from mnist_webgpu.core.records import plain
from mnist_webgpu.sweep import plan as sweep_config

FIRST_COLUMNS = ("lr", "batch_size", "steps", "optimizer", "lr_schedule", "widths", "augment")


def fmt(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {fmt(v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(fmt(v) for v in value) or "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def columns(rows: list[dict]) -> list[str]:
    keys = {k for r in rows for k in r.get("overrides", {})}
    used = [r["hyperparameters"] for r in rows]
    keys |= {k for k in used[0] if len({repr(u.get(k)) for u in used}) > 1} if used else set()
    keys -= {"lr_first", "lr_last"}  # consequences of lr and its schedule, not knobs
    return [k for k in FIRST_COLUMNS if k in keys] + sorted(keys - set(FIRST_COLUMNS))


def per_second(row: dict) -> float:
    return row["val_accuracy"] / row["train_seconds"] if row["train_seconds"] > 0 else 0.0


def status(row: dict) -> str:
    if row["state"] == "pruned":
        return f"pruned at step {row['steps_done']}"
    if row["state"] == "failed":
        return "failed"
    return ""


def report(rows: list[dict]) -> list[dict[str, Any]]:
    """One entry per model with a finished current trial: ranked, then its pruned and failed ones."""
    out = []
    for model in sorted({r["model"] for r in rows if r.get("current") and r["state"] == "complete"}):
        mine = [r for r in rows if r["model"] == model and r.get("current")]
        ranked = sorted(
            (r for r in mine if r["state"] == "complete"),
            key=lambda r: (-r["val_accuracy"], r["train_seconds"], r["trial"], r["number"]),
        )
        stopped = sorted((r for r in mine if r["state"] != "complete"), key=lambda r: -r["val_accuracy"])
        cols = columns(ranked + stopped)
        out.append(
            {
                "model": model,
                "columns": cols,
                "rows": [
                    {**r, "cells": [fmt(r["hyperparameters"].get(c)) for c in cols], "status": status(r)}
                    for r in ranked + stopped
                ],
                "best": ranked[0],
                "fastest": max(ranked, key=per_second),
                "finished": len(ranked),
                "pruned": sum(r["state"] == "pruned" for r in stopped),
                "failed": sum(r["state"] == "failed" for r in stopped),
                "studies": sorted({r["study"] for r in mine}),
                "devices": sorted({r["device"] for r in mine if r["device"]}),
                "tinygrad": sorted({r["tinygrad_version"] for r in mine if r["tinygrad_version"]}),
                "dates": sorted(r["date"][:10] for r in mine if r["date"]),
                "earlier": sum(1 for r in rows if r["model"] == model and not r.get("current")),
            }
        )
    return out


def _summary(row: dict) -> str:
    return f"`{row['trial']}`: {row['val_accuracy']:.2%} validation accuracy in {row['train_seconds']:.1f} s"


def markdown(models: list[dict]) -> str:
    lines = [
        "# Hyperparameters",
        "",
        "Written by `doit sweep` from the committed record `sweeps/results.json`; do not edit by hand.",
        "Each trial is an Optuna trial: a grid point, a listed trial, or a point drawn by TPE, trained",
        "by the real trainer. Every trial is chosen and scored on the validation split only (images",
        "held out of training); the test set plays no part. Hyperparameters are the values the",
        "trainer used, read back from it (a pruned trial shows the ones it asked for).",
    ]
    if not models:
        lines += ["", "No sweep results yet: add a `[sweep.<model>]` section and run `doit sweep`."]
    for m in models:
        split = m["best"].get("split", {})
        fastest = m["fastest"]
        dates = m["dates"]
        lines += [
            "",
            f"## {m['model']}",
            "",
            f"- Best: {_summary(m['best'])}.",
            f"- Best accuracy per training second: {_summary(fastest)}"
            f" ({per_second(fastest) * 100:.2f} points/s).",
            f"- {m['finished']} finished, {m['pruned']} pruned, {m['failed']} failed trial(s);"
            f" studies {', '.join(f'`{s}`' for s in m['studies'])}.",
            f"- Device {', '.join(m['devices']) or '?'}, tinygrad {', '.join(m['tinygrad']) or '?'},"
            f" {dates[0] if dates else '?'} to {dates[-1] if dates else '?'}.",
            f"- Split: {split.get('train', '?')} training images, {split.get('val', '?')} validation images.",
        ]
        if m["earlier"]:
            lines.append(
                f"- {m['earlier']} earlier trial(s) no longer in config.toml are kept in the record."
            )
        head = [
            "trial",
            *m["columns"],
            "val. accuracy",
            "train time",
            "steps/s",
            "params",
            "state",
            "device",
            "date",
        ]
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in m["rows"]:
            cells = [
                f"`{r['trial']}`",
                *r["cells"],
                f"{r['val_accuracy']:.2%}",
                f"{r['train_seconds']:.1f} s",
                f"{r['steps_per_second']:.1f}",
                str(r.get("params") or "-"),
                r["status"] or "finished",
                r["device"],
                r["date"][:10],
            ]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def config_of(cfg: Config, row: dict) -> ModelConfig | None:
    """The [models.<name>] section a row trained, if config.toml still describes it."""
    for t in sweep_config.of(cfg).trials:
        if t.id == row["trial"]:
            return t.config
    if row.get("sampled") and ".search." in row["study"]:
        try:
            return sweep_config.search_trial(cfg, row["model"], row["sampled"], "sweeps/results.json").config
        except (ConfigError, KeyError):
            return None
    return None


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)


def snippet(mc: ModelConfig, row: dict) -> str:
    """The whole [models.<name>] section of the best trial, ready to replace the user's."""
    lines = [
        f"# best {mc.name} trial {row['trial']}: {row['val_accuracy']:.2%} validation accuracy "
        f"in {row['train_seconds']:.1f} s",
        f"[models.{mc.name}]",
    ]
    for f in dataclasses.fields(mc):
        if f.name != "name":
            lines.append(f"{f.name} = {_toml(plain(getattr(mc, f.name)))}")
    return "\n".join(lines) + "\n"
