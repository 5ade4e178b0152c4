"""The sweep: [sweep] config, trial tasks under the real doit, results, report and site page."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import sitekit

from mnist_webgpu import charts, config, site, sweep, sweep_report

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[data]
mirrors = []
retries = 0

[train]
val_size = 500
train_limit = 3000
test_limit = 500

[models.mlp]
arch = "mlp"
widths = [16]
lr = 0.003
lr_schedule = "constant"
batch_size = 16
steps = 20
eval_every = 10
seed = 7
augment = { shift = 1.0, rotate = 5.0 }

[models.cnn]
arch = "cnn"
widths = [2]
batch_size = 16
steps = 4
eval_every = 2
"""

SWEEP = """
[sweep.mlp]
grid = { lr = [0.001, 0.02] }
"""


def parse(text: str) -> config.Config:
    return config.parse(text, Path("config.toml"))


# --- config -------------------------------------------------------------------------------


def test_grid_and_list_expand_to_validated_trials():
    cfg = parse(
        BASE
        + """
[sweep.mlp]
grid = { lr = [0.001, 0.01], batch_size = [16, 32] }
trials = [{ optimizer = "sgd", lr = 0.05 }, { augment = { shift = 0 } }, { lr = 0.001, batch_size = 16 }]
"""
    )
    assert len(cfg.trials) == 6  # 4 from the grid, 2 new from the list (the third repeats the grid)
    assert [t.overrides for t in cfg.trials[:2]] == [
        {"lr": 0.001, "batch_size": 16},
        {"lr": 0.001, "batch_size": 32},
    ]
    assert all(re.fullmatch(r"mlp-[0-9a-f]{8}", t.id) for t in cfg.trials)
    sgd = cfg.trials[4]
    assert sgd.config.optimizer == "sgd" and sgd.config.lr == 0.05 and sgd.config.widths == (16,)
    # a table value merges into the model's own table
    aug = cfg.trials[5].config.augment
    assert (aug.shift, aug.rotate, aug.scale) == (0.0, 5.0, 0.0)


def test_trial_ids_follow_what_the_trial_trains():
    a, b = parse(BASE + SWEEP), parse(BASE + SWEEP.replace("0.02", "0.03"))
    assert a.trials[0].id == b.trials[0].id and a.trials[1].id != b.trials[1].id
    # the same trial written differently is the same trial
    assert parse(BASE + SWEEP.replace("0.001", "1e-3")).trials[0].id == a.trials[0].id
    # a change to the data split changes every trial: their results would not compare
    other = parse(BASE.replace("val_size = 500", "val_size = 400") + SWEEP)
    assert not {t.id for t in other.trials} & {t.id for t in a.trials}
    # a gate on the test set is not a training input
    gated = parse(BASE.replace('arch = "mlp"', 'arch = "mlp"\nmin_test_accuracy = 0.5') + SWEEP)
    assert [t.id for t in gated.trials] == [t.id for t in a.trials]


@pytest.mark.parametrize(
    ("sweep_text", "message"),
    [
        ("grid = { lr = [0.001, -1] }", "sweep.mlp.grid.lr[1]: expected a number > 0, got -1"),
        ("grid = { lr = 0.001 }", "sweep.mlp.grid.lr: expected a non-empty list of values to try, got 0.001"),
        ("grid = { lrate = [1] }", "sweep.mlp.grid.lrate: unknown key (known keys: arch, augment,"),
        ("grid = { min_test_accuracy = [0.5] }", "sweep.mlp.grid.min_test_accuracy: not a hyperparameter"),
        (
            'trials = [{ optimizer = "rmsprop" }]',
            "sweep.mlp.trials[0].optimizer: expected one of adam, adamw, sgd",
        ),
        (
            "trials = [{ batch_size = 9000 }]",
            "sweep.mlp.trials[0].batch_size: expected at most the 2500 training",
        ),
        (
            "trials = [{ steps = 5, warmup_steps = 10 }]",
            "sweep.mlp.trials[0].warmup_steps: expected fewer than steps, got 10",
        ),
        ("trials = [{ steps = 5 }]\n[sweep.mlp.x]", "sweep.mlp.x: unknown key (known keys: grid, trials)"),
        (
            "grid = { augment = [{ shift = 99 }] }",
            "sweep.mlp.grid.augment[0].shift: expected a number of pixels",
        ),
        ("grid = { widths = [[16, 0]] }", "sweep.mlp.grid.widths[0]: expected a non-empty list of positive"),
    ],
)
def test_bad_trial_values_name_their_place(sweep_text, message):
    with pytest.raises(config.ConfigError) as info:
        parse(BASE + "\n[sweep.mlp]\n" + sweep_text + "\n")
    assert str(info.value).startswith("config.toml: ") and message in str(info.value)
    assert "\n" not in str(info.value)


def test_a_sweep_of_an_unknown_model_is_an_error():
    with pytest.raises(config.ConfigError, match=r"sweep\.rnn: expected the name of a model in \[models\]"):
        parse(BASE + "\n[sweep.rnn]\ngrid = { lr = [1] }\n")


def test_a_cross_key_rule_broken_by_the_base_section_names_the_trial():
    with pytest.raises(
        config.ConfigError, match=r"models\.mlp\.warmup_steps \(in the trial sweep\.mlp\.grid\)"
    ):
        parse(
            BASE.replace("steps = 20", "steps = 20\nwarmup_steps = 10", 1)
            + "[sweep.mlp]\ngrid = { steps = [5] }\n"
        )


def test_the_snippet_is_the_trials_section_as_toml():
    cfg = parse(
        BASE + '[sweep.mlp]\ntrials = [{ optimizer = "adamw", weight_decay = 0.01, widths = [8, 8] }]\n'
    )
    (trial,) = cfg.trials
    text = sweep_report.snippet(trial.config, {"trial": trial.id, "val_accuracy": 0.9, "train_seconds": 3.0})
    assert text.startswith(
        f"# best mlp trial {trial.id}: 90.00% validation accuracy in 3.0 s\n[models.mlp]\n"
    )
    pasted = BASE.split("[models.mlp]")[0] + text + "\n[models.cnn]" + BASE.split("[models.cnn]")[1]
    assert parse(pasted).model("mlp") == trial.config


# --- report and page, from made-up rows ---------------------------------------------------------


def row(trial: str, acc: float, seconds: float, current: bool = True, **used) -> dict:
    hyper = {"lr": 0.001, "batch_size": 16, "optimizer": "adam", "steps": 20, "augment": {"shift": 1.0}}
    return {
        "model": "mlp",
        "trial": trial,
        "where": "sweep.mlp.grid",
        "best_step": 20,
        "settings_hash": "0" * 64,
        "code_hash": "1" * 64,
        "overrides": {"lr": used.get("lr", 0.001)},
        "hyperparameters": {**hyper, **used},
        "val_accuracy": acc,
        "train_seconds": seconds,
        "steps_per_second": 20 / seconds,
        "params": 12730,
        "split": {"train": 2500, "val": 500},
        "device": "CPU",
        "tinygrad_version": "0.14.0",
        "date": "2025-01-02T03:04:05+00:00",
        "current": current,
    }


ROWS = [
    row("mlp-aaaaaaaa", 0.80, 10.0, lr=0.001),
    row("mlp-bbbbbbbb", 0.90, 40.0, lr=0.01),
    row("mlp-cccccccc", 0.85, 12.0, lr=0.003, batch_size=32),
    row("mlp-dddddddd", 0.99, 5.0, current=False),
]


def test_report_ranks_current_trials_and_finds_the_best_per_second():
    (m,) = sweep_report.report(ROWS)
    assert [r["trial"] for r in m["rows"]] == ["mlp-bbbbbbbb", "mlp-cccccccc", "mlp-aaaaaaaa"]
    assert m["best"]["trial"] == "mlp-bbbbbbbb" and m["fastest"]["trial"] == "mlp-aaaaaaaa"
    assert m["earlier"] == 1
    # the swept key and the key whose used value varied are columns; constant ones are not
    assert m["columns"] == ["lr", "batch_size"]


def test_a_knob_the_trainer_ignored_shows_as_identical_rows():
    ignored = [row("mlp-aaaaaaaa", 0.8, 10.0), row("mlp-bbbbbbbb", 0.8, 10.0)]
    ignored[1]["overrides"] = {"lr": 0.01}  # asked for, but the trainer used 0.001 in both
    (m,) = sweep_report.report(ignored)
    assert m["columns"] == ["lr"] and [r["cells"] for r in m["rows"]] == [["0.001"], ["0.001"]]


def test_markdown_table():
    text = sweep_report.markdown(sweep_report.report(ROWS))
    lines = text.splitlines()
    assert "## mlp" in lines
    assert any(
        line.startswith("- Best: `mlp-bbbbbbbb`: 90.00% validation accuracy in 40.0 s") for line in lines
    )
    assert any("per training second: `mlp-aaaaaaaa`" in line for line in lines)
    table = [line for line in lines if line.startswith("| `mlp-")]
    assert [t.split("|")[1].strip() for t in table] == ["`mlp-bbbbbbbb`", "`mlp-cccccccc`", "`mlp-aaaaaaaa`"]
    assert "| trial | lr | batch_size | val. accuracy |" in text
    assert "mlp-dddddddd" not in text and "1 earlier trial(s)" in text
    assert "test set plays no part" in text


def test_scatter_is_valid_svg_with_one_dot_per_trial():
    svg = charts.scatter([(10.0, 0.8, "a"), (40.0, 0.9, "b"), (12.0, 0.85, "c")], title="t", best="b")
    root = ET.fromstring(svg)
    dots = root.findall("{http://www.w3.org/2000/svg}circle")
    assert len(dots) == 3 and sum("best" in d.get("class") for d in dots) == 1
    assert "style=" not in svg
    assert ET.fromstring(charts.scatter([], title="t")) is not None


def test_site_gets_a_sweep_page_only_with_results(tmp_path, fast_config, mnist):
    paths = sitekit.make_inputs(tmp_path, fast_config, mnist)
    without = site.render(fast_config, tmp_path / "plain", paths)
    assert not (without / "sweep.html").exists() and "sweep.html" not in (without / "index.html").read_text()
    assert paths.layout.sweep_results not in site.input_files(fast_config, paths)

    paths.layout.sweep_results.parent.mkdir(parents=True)
    sweep.write_results(ROWS, paths.layout.sweep_results)
    out = site.render(fast_config, tmp_path / "out", paths)
    page = (out / "sweep.html").read_text()
    table = page[page.index("<tbody>") :]
    assert table.index("mlp-bbbbbbbb") < table.index("mlp-cccccccc") < table.index("mlp-aaaaaaaa")
    assert (
        "<svg" in page and page.count('class="dot ') == 3 and "style=" not in page and "<script" not in page
    )
    assert 'href="sweep.html" data-testid="sweep-link"' in (out / "index.html").read_text()
    assert 'href="../sweep.html"' in (out / "models" / "mlp.html").read_text()  # the header, one level down
    assert "## mlp" in (out / "HYPERPARAMETERS.md").read_text()
    assert paths.layout.sweep_results in site.input_files(fast_config, paths)
    from mnist_webgpu import verify

    assert verify.check_references(out) == []


# --- the real doit -----------------------------------------------------------------------------


class Project:
    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.env = {**os.environ, config.CACHE_ENV: str(cache)}
        for var in (config.CONFIG_ENV, "DEV", "PYTHONPATH"):
            self.env.pop(var, None)

    def write(self, text: str) -> None:
        (self.root / "config.toml").write_text(text)

    def doit(self, *args: str) -> dict[str, str]:
        """trial/sweep task -> '.' (ran) or '--' (up to date)."""
        result = subprocess.run(
            [sys.executable, "-m", "doit", *args], cwd=self.root, env=self.env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        self.stdout = result.stdout
        return {m[2]: m[1] for m in re.finditer(r"^(\.|--)\s+(trial:\S+|sweep)$", result.stdout, re.M)}

    def results(self) -> dict[str, dict]:
        data = json.loads((self.root / "build/sweep/results.json").read_text())
        return {r["trial"]: r for r in data["rows"]}


def ran(status: dict[str, str]) -> set[str]:
    return {t for t, s in status.items() if s == "." and t.startswith("trial:")}


@pytest.fixture
def project(tmp_path, mnist_cache) -> Project:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dodo.py", "src", "templates", "site_src"):
        src = ROOT / name
        copy = shutil.copytree if src.is_dir() else shutil.copy
        copy(src, root / name, **({"ignore": shutil.ignore_patterns("__pycache__")} if src.is_dir() else {}))
    return Project(root, mnist_cache)


@pytest.mark.slow
def test_doit_sweep_runs_each_trial_once_and_only_what_changed(project):
    project.write(BASE + SWEEP)
    ids = [t.id for t in parse(BASE + SWEEP).trials]
    first = project.doit("-n", "2", "sweep")
    assert ran(first) == {f"trial:{i}" for i in ids} and first["sweep"] == "."
    rows = project.results()
    assert set(rows) == set(ids)
    # the rows differ in the swept knob, as the trainer used it, and in nothing else they set
    used = [rows[i]["hyperparameters"] for i in ids]
    assert (used[0]["lr"], used[1]["lr"]) == (0.001, 0.02) and used[1]["lr_last"] == pytest.approx(0.02)
    assert {k for k in used[0] if used[0][k] != used[1][k]} == {"lr", "lr_first", "lr_last"}
    assert used[0]["batch_size"] == 16 and used[0]["widths"] == [16] and used[0]["steps"] == 20
    assert used[0]["augment"] == {"shift": 1.0, "rotate": 5.0, "scale": 0.0}
    for r in rows.values():
        assert 0 < r["val_accuracy"] <= 1 and r["train_seconds"] > 0 and r["steps_per_second"] > 0
        assert r["params"] == 784 * 16 + 16 + 16 * 10 + 10 and r["device"] == "CPU"
        assert r["tinygrad_version"] == "0.14.0" and r["date"] and r["current"]
        assert not any("test" in k for k in r), "a trial never scores the test set"
    assert "[models.mlp]" in project.stdout and "config.toml was not changed" in project.stdout
    md = (project.root / "build/sweep/HYPERPARAMETERS.md").read_text()
    assert "## mlp" in md and not (project.root / "HYPERPARAMETERS.md").exists()
    assert not (project.root / "build/models").exists(), "a sweep trains no model of the build"

    assert ran(project.doit("sweep", "--write-md")) == set()
    assert (project.root / "HYPERPARAMETERS.md").read_text() == md

    project.write(BASE + SWEEP.replace("0.02", "0.005"))
    changed = project.doit("sweep")
    new_id = parse(BASE + SWEEP.replace("0.02", "0.005")).trials[1].id
    assert ran(changed) == {f"trial:{new_id}"} and changed[f"trial:{ids[0]}"] == "--"
    after = project.results()
    assert after[ids[0]] == {**rows[ids[0]]}  # untouched
    assert after[ids[1]]["current"] is False and after[new_id]["current"] is True  # kept, not ranked


@pytest.mark.slow
def test_a_killed_sweep_resumes_and_keeps_finished_rows(project):
    slow = BASE + "\n[sweep.mlp]\ntrials = [{ lr = 0.001 }, { lr = 0.002, steps = 100000, eval_every = 5 }]\n"
    quick, endless = parse(slow).trials
    # an earlier sweep's result: a failed or killed run must not lose it
    project.write(BASE + "\n[sweep.mlp]\ntrials = [{ lr = 0.004 }]\n")
    project.doit("sweep")
    (earlier,) = project.results()

    project.write(slow)
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit", "sweep"],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the kill reaches the trainer too
    )
    try:
        deadline = time.monotonic() + 300
        quick_result = project.root / "build/sweep/mlp" / f"{quick.id}.json"
        endless_started = False
        # trials run side by side on a machine with more cores: wait for both states
        for line in proc.stdout:
            endless_started = endless_started or line.startswith(f"{endless.id}: step ")
            if (endless_started and quick_result.is_file()) or time.monotonic() > deadline:
                break
        os.killpg(proc.pid, signal.SIGKILL)  # no chance for doit to save its database
    finally:
        proc.wait(timeout=60)
    assert quick_result.is_file()
    assert not (project.root / "build/sweep/mlp" / f"{endless.id}.json").exists()
    assert set(project.results()) == {earlier}  # results.json as the last finished sweep left it

    project.write(slow.replace("steps = 100000", "steps = 20"))
    resumed = project.doit("sweep")
    finished = parse(slow.replace("steps = 100000", "steps = 20")).trials[1]
    assert resumed[f"trial:{quick.id}"] == "--" and ran(resumed) == {f"trial:{finished.id}"}
    assert set(project.results()) == {earlier, quick.id, finished.id}
