"""The sweep: [sweep] config (grid, trials, search), the record, report and site page.

Workers, storages and the real trainer: tests/integration/test_study.py."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from kits import sitekit
from kits.projectkit import ROOT
from kits.sweepkit import TINY_MLP

from mnist_webgpu.core import config
from mnist_webgpu.pipeline import tasks
from mnist_webgpu.site import charts
from mnist_webgpu.site import render as site
from mnist_webgpu.sweep import plan as sweep_config
from mnist_webgpu.sweep import record as sweep
from mnist_webgpu.sweep import report as sweep_report

BASE = (
    TINY_MLP
    + """augment = { shift = 1.0, rotate = 5.0 }

[models.cnn]
arch = "cnn"
widths = [2]
batch_size = 16
steps = 4
eval_every = 2
"""
)

SWEEP = """
[sweep.mlp]
grid = { lr = [0.001, 0.02] }
"""


def parse(text: str) -> config.Config:
    cfg = config.parse(text, Path("config.toml"))
    sweep_config.of(cfg)  # as doit reads it: a mistake in [sweep] stops here
    return cfg


def search_of(text: str) -> sweep_config.Search:
    (search,) = sweep_config.of(parse(text)).searches
    return search


def trials(cfg: config.Config) -> tuple[sweep_config.Trial, ...]:
    return sweep_config.of(cfg).trials


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
    assert len(trials(cfg)) == 6  # 4 from the grid, 2 new from the list (the third repeats the grid)
    assert [t.overrides for t in trials(cfg)[:2]] == [
        {"lr": 0.001, "batch_size": 16},
        {"lr": 0.001, "batch_size": 32},
    ]
    assert all(re.fullmatch(r"mlp-[0-9a-f]{8}", t.id) for t in trials(cfg))
    sgd = trials(cfg)[4]
    assert sgd.config.optimizer == "sgd" and sgd.config.lr == 0.05 and sgd.config.widths == (16,)
    # a table value merges into the model's own table
    aug = trials(cfg)[5].config.augment
    assert (aug.shift, aug.rotate, aug.scale) == (0.0, 5.0, 0.0)


def test_trial_ids_follow_what_the_trial_trains():
    a, b = parse(BASE + SWEEP), parse(BASE + SWEEP.replace("0.02", "0.03"))
    assert trials(a)[0].id == trials(b)[0].id and trials(a)[1].id != trials(b)[1].id
    # the same trial written differently is the same trial
    assert sweep_config.of(parse(BASE + SWEEP.replace("0.001", "1e-3"))).trials[0].id == trials(a)[0].id
    # a change to the data split changes every trial: their results would not compare
    other = parse(BASE.replace("val_size = 500", "val_size = 400") + SWEEP)
    assert not {t.id for t in trials(other)} & {t.id for t in trials(a)}
    # a gate on the test set is not a training input
    gated = parse(BASE.replace('arch = "mlp"', 'arch = "mlp"\nmin_test_accuracy = 0.5') + SWEEP)
    assert [t.id for t in trials(gated)] == [t.id for t in trials(a)]


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
        (
            "trials = [{ steps = 5 }]\n[sweep.mlp.x]",
            "sweep.mlp.x: unknown key (known keys: grid, trials, search",
        ),
        (
            "grid = { augment = [{ shift = 99 }] }",
            "sweep.mlp.grid.augment[0].shift: expected a number of pixels",
        ),
        (
            "grid = { widths = [[16, 0]] }",
            "sweep.mlp.grid.widths[0]: expected a list of 1 to 8 integers between 1 and 65,536",
        ),
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
    (trial,) = trials(cfg)
    text = sweep_report.snippet(trial.config, {"trial": trial.id, "val_accuracy": 0.9, "train_seconds": 3.0})
    assert text.startswith(
        f"# best mlp trial {trial.id}: 90.00% validation accuracy in 3.0 s\n[models.mlp]\n"
    )
    pasted = BASE.split("[models.mlp]")[0] + text + "\n[models.cnn]" + BASE.split("[models.cnn]")[1]
    assert parse(pasted).model("mlp") == trial.config


# --- report and page, from made-up rows ---------------------------------------------------------


def row(
    trial: str, acc: float, seconds: float, current: bool = True, state: str = "complete", **used
) -> dict:
    hyper = {"lr": 0.001, "batch_size": 16, "optimizer": "adam", "steps": 20, "augment": {"shift": 1.0}}
    out = {
        "model": "mlp",
        "trial": trial,
        "study": "mlp.grid.0123abcd",
        "number": int(trial[-1], 16) if trial[-1] in "0123456789abcdef" else 0,
        "state": state,
        "steps_done": 10 if state == "pruned" else 20,
        "where": "sweep.mlp.grid",
        "best_step": 20,
        "settings_hash": "0" * 64,
        "sampled": {},
        "worker": "w1",
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
    if state != "complete":
        del out["params"]  # a trial pruned before it finished has no read-back: the record omits it
    return out


ROWS = [
    row("mlp-aaaaaaaa", 0.80, 10.0, lr=0.001),
    row("mlp-bbbbbbbb", 0.90, 40.0, lr=0.01),
    row("mlp-cccccccc", 0.85, 12.0, lr=0.003, batch_size=32),
    row("mlp-dddddddd", 0.99, 5.0, current=False),
    row("mlp-eeeeeeee", 0.95, 2.0, state="pruned", lr=0.02),
]


def test_report_ranks_current_trials_and_finds_the_best_per_second():
    (m,) = sweep_report.report(ROWS)
    # a pruned trial never ranks above a finished one, however well it was doing, nor counts as best
    assert [r["trial"] for r in m["rows"]] == ["mlp-bbbbbbbb", "mlp-cccccccc", "mlp-aaaaaaaa", "mlp-eeeeeeee"]
    assert m["rows"][-1]["status"] == "pruned at step 10"
    assert m["best"]["trial"] == "mlp-bbbbbbbb" and m["fastest"]["trial"] == "mlp-aaaaaaaa"
    assert (m["earlier"], m["finished"], m["pruned"], m["failed"]) == (1, 3, 1, 0)
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
    assert [t.split("|")[1].strip() for t in table] == [
        "`mlp-bbbbbbbb`",
        "`mlp-cccccccc`",
        "`mlp-aaaaaaaa`",
        "`mlp-eeeeeeee`",
    ]
    assert table[-1].split("|")[-4].strip() == "pruned at step 10"
    assert "| trial | lr | batch_size | val. accuracy |" in text
    assert "3 finished, 1 pruned, 0 failed" in text
    assert "mlp-dddddddd" not in text and "1 earlier trial(s)" in text
    assert "test set plays no part" in text


def test_scatter_is_valid_svg_with_one_dot_per_trial():
    svg = charts.scatter([(10.0, 0.8, "a"), (40.0, 0.9, "b"), (12.0, 0.85, "c")], title="t", best="b")
    root = ET.fromstring(svg)
    dots = root.findall("{http://www.w3.org/2000/svg}circle")
    assert len(dots) == 3 and sum("best" in d.get("class") for d in dots) == 1
    assert "style=" not in svg
    assert ET.fromstring(charts.scatter([], title="t")) is not None


def test_site_gets_a_sweep_page_from_the_committed_record(tmp_path, fast_config, mnist):
    paths = sitekit.make_inputs(tmp_path, fast_config, mnist)
    without = site.render(fast_config, tmp_path / "plain", paths)
    assert not (without / "sweep.html").exists() and "sweep.html" not in (without / "index.html").read_text()
    assert paths.layout.sweep_results not in site.input_files(fast_config, paths)

    # the record sits beside build/, in the project: committed, so a fresh checkout has it
    assert paths.layout.sweep_results == tmp_path / "sweeps" / "results.json"
    paths.layout.sweep_results.parent.mkdir(parents=True)
    sweep.write_results(ROWS, paths.layout.sweep_results)
    out = site.render(fast_config, tmp_path / "out", paths)
    page = (out / "sweep.html").read_text()
    table = page[page.index("<tbody>") :]
    assert table.index("mlp-bbbbbbbb") < table.index("mlp-cccccccc") < table.index("mlp-aaaaaaaa")
    assert 'data-state="pruned"' in table and "pruned at step 10" in table
    # one dot per finished trial: a pruned trial's time is partial
    assert (
        "<svg" in page and page.count('class="dot ') == 3 and "style=" not in page and "<script" not in page
    )
    assert 'href="sweep.html" data-testid="sweep-link"' in (out / "index.html").read_text()
    assert 'href="../sweep.html"' in (out / "models" / "mlp.html").read_text()  # the header, one level down
    assert "## mlp" in (out / "HYPERPARAMETERS.md").read_text()
    assert paths.layout.sweep_results in site.input_files(fast_config, paths)
    from mnist_webgpu.publish import verify

    assert verify.check_references(out) == []


def test_the_default_build_reads_the_record_and_never_runs_the_sweep(fast_config):
    """build -> verify -> site: the record is a file the site reads, never a task's target."""
    graph = {"build": tasks.build_task(), "verify": tasks.verify_task(fast_config)}
    graph["site"] = tasks.site_task(fast_config)
    assert graph["build"]["task_dep"] == ["verify"] and graph["verify"]["task_dep"] == ["site"]
    assert "task_dep" not in graph["site"]
    sweep_task = tasks.sweep_tasks(fast_config)
    assert sweep_task["basename"] == "sweep" and not sweep_task.get("targets")
    # nothing the build depends on is produced by the sweep task
    assert not {d for t in graph.values() for d in t.get("file_dep", [])} & set(sweep_task.get("targets", []))


def test_the_committed_record_is_a_valid_report():
    record = ROOT / "sweeps" / "results.json"
    if not record.exists():
        pytest.skip("no committed sweep record yet")
    models = sweep_report.report(sweep.load_results(record))
    assert models, "the committed record has no finished current trial"
    for m in models:
        assert all(r["split"] and r["device"] and r["tinygrad_version"] for r in m["rows"])
        assert not any("test" in k for r in m["rows"] for k in r), "a trial never scores the test set"
    assert (ROOT / "HYPERPARAMETERS.md").read_text() == sweep_report.markdown(models)


# --- search sections -----------------------------------------------------------------------------


def test_search_section_becomes_optuna_distributions():
    cfg = parse(
        BASE
        + """
[sweep]
storage = "sqlite:///x.db"
heartbeat_seconds = 3
[sweep.mlp]
n_trials = 12
prune_warmup_steps = 10
[sweep.mlp.search]
lr = { low = 1e-4, high = 1e-2, log = true }
steps = { low = 10, high = 40, step = 10 }
widths = [[16], [32, 16]]
augment = { rotate = { low = 0.0, high = 10.0 }, shift = [0, 2] }
"""
    )
    plan = sweep_config.of(cfg)
    assert (plan.storage, plan.heartbeat_seconds, plan.trials) == ("sqlite:///x.db", 3, ())
    (s,) = plan.searches
    assert (s.model, s.n_trials, s.prune_warmup_steps, s.prune_startup_trials) == ("mlp", 12, 10, 4)
    by = {p.name: p for p in s.params}
    assert (by["lr"].kind, by["lr"].low, by["lr"].high, by["lr"].log) == ("float", 1e-4, 1e-2, True)
    assert (by["steps"].kind, by["steps"].step) == ("int", 10)
    assert by["widths"].choices == ("[16]", "[32, 16]")  # lists travel as JSON text
    assert by["augment.rotate"].kind == "float" and by["augment.shift"].choices == (0.0, 2.0)
    # a drawn point is the model's section with those keys, validated; a table merges
    t = sweep_config.search_trial(
        cfg, "mlp", {"lr": 0.001, "widths": "[32, 16]", "augment.rotate": 4.0}, "sweep.mlp.search"
    )
    assert t.config.widths == (32, 16) and t.config.lr == 0.001
    assert (t.config.augment.shift, t.config.augment.rotate) == (1.0, 4.0)
    assert re.fullmatch(r"mlp-[0-9a-f]{8}", t.id) and t.where == "sweep.mlp.search"
    # the study follows the space: a new space (or new base settings) is a new study
    again = sweep_config.of(
        parse(BASE + "[sweep.mlp]\nsearch = { lr = [0.001, 0.01] }\nn_trials = 2\n")
    ).searches[0]
    other = sweep_config.of(
        parse(BASE + "[sweep.mlp]\nsearch = { lr = [0.001, 0.02] }\nn_trials = 2\n")
    ).searches[0]
    assert again.key != other.key
    more = sweep_config.of(
        parse(BASE + "[sweep.mlp]\nsearch = { lr = [0.001, 0.01] }\nn_trials = 9\n")
    ).searches[0]
    assert more.key == again.key  # asking for more trials continues the same study


@pytest.mark.parametrize(
    ("sweep_text", "message"),
    [
        ("search = { lr = [0.001] }", "sweep.mlp.n_trials: expected a whole number of trials from 1 to 256"),
        ("n_trials = 4\ngrid = { lr = [1] }", "sweep.mlp.n_trials: only a search has it"),
        (
            "search = { lr = [0.001] }\nn_trials = 4\ngrid = { lr = [1] }",
            "sweep.mlp.grid: a section has either search or grid/trials, not both",
        ),
        (
            "search = { lr = { low = 0.01, high = 0.001 } }\nn_trials = 2",
            "sweep.mlp.search.lr.high: expected more than low (0.01), got 0.001",
        ),
        (
            "search = { lr = { low = -1, high = 1 } }\nn_trials = 2",
            "sweep.mlp.search.lr.low: expected a number > 0",
        ),
        (
            "search = { batch_size = { low = 8.5, high = 32 } }\nn_trials = 2",
            "sweep.mlp.search.batch_size.low: expected a whole number (batch_size is one), got 8.5",
        ),
        (
            "search = { optimizer = { low = 1, high = 2 } }\nn_trials = 2",
            "sweep.mlp.search.optimizer: expected a list of values (optimizer is not a number)",
        ),
        (
            'search = { optimizer = ["adam", "rmsprop"] }\nn_trials = 2',
            "sweep.mlp.search.optimizer[1]: expected one of",
        ),
        (
            "search = { lr = { low = 1, high = 2, lg = true } }\nn_trials = 2",
            "sweep.mlp.search.lr.lg: unknown key",
        ),
        ("search = { augment = { spin = [1] } }\nn_trials = 2", "sweep.mlp.search.augment.spin: unknown key"),
        ("search = { lr = [0.001] }\nn_trials = 0", "sweep.mlp.n_trials: expected a whole number of trials"),
        (
            "search = { lr = [0.001] }\nn_trials = 2\nprune_warmup_steps = -1",
            "sweep.mlp.prune_warmup_steps: expected a whole number of training steps >= 0, got -1",
        ),
    ],
)
def test_bad_search_sections_name_their_place(sweep_text, message):
    with pytest.raises(config.ConfigError) as info:
        parse(BASE + "\n[sweep.mlp]\n" + sweep_text + "\n")
    assert str(info.value).startswith("config.toml: ") and message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ("storage = 5", "sweep.storage: expected an Optuna storage URL"),
        (
            "heartbeat_seconds = 0",
            "sweep.heartbeat_seconds: expected a whole number of seconds from 1 to 600",
        ),
        (
            "stroage = 'x'",
            "sweep.stroage: expected the name of a model in [models] (mlp, cnn) or one of storage",
        ),
    ],
)
def test_bad_top_level_sweep_keys(top, message):
    with pytest.raises(config.ConfigError) as info:
        parse(BASE + "\n[sweep]\n" + top + "\n")
    assert message in str(info.value) and "\n" not in str(info.value)
