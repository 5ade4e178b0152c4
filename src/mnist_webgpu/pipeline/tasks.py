"""doit task factories: what each stage depends on and produces. `dodo.py` exposes them.

Every action is a subprocess `python -m mnist_webgpu <stage>` so tinygrad's environment
is set per stage and a failure is one line and a non-zero exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from doit.action import CmdAction
from doit.tools import Interactive, config_changed

from mnist_webgpu.core import config, records
from mnist_webgpu.core.config import training_settings
from mnist_webgpu.core.layout import PROJECT
from mnist_webgpu.core.machine import cpu_cores
from mnist_webgpu.data import mnist as data
from mnist_webgpu.models import zoo
from mnist_webgpu.pipeline import closure
from mnist_webgpu.pipeline.stages import STAGES
from mnist_webgpu.sweep import plan

PACKAGE_DIR = Path(__file__).resolve().parents[1]
SRC_DIR = PACKAGE_DIR.parent
BENCH_DIR = SRC_DIR.parent / "bench"  # the checkout's bench/ scripts: not part of the installed package


PARALLEL_TASKS = cpu_cores()  # doit runs this many tasks at once


def load_config_or_exit() -> config.Config:
    try:
        cfg = config.load()
        plan.of(cfg)  # [sweep] is the sweep package's to read; doit stops on its mistakes too
        zoo.check(cfg)  # and the models' rules are the zoo's: widths, weights, activations
        return cfg
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def stage_env(cfg: config.Config) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    env[config.CONFIG_ENV] = str(cfg.path)
    return env


def stage_command(*args: str) -> list[str]:
    """`python -m mnist_webgpu <args>` with this interpreter."""
    return [sys.executable, "-m", "mnist_webgpu", *args]


def stage(cfg: config.Config, *args: str) -> Interactive:
    """Run one pipeline stage in a child process that inherits the terminal (progress bars)."""
    return Interactive(stage_command(*args), shell=False, env=stage_env(cfg))


def side_by_side_stage(cfg: config.Config, *args: str) -> CmdAction:
    """A stage that may run next to another (doit runs one task per core): plain log lines.

    Two progress bars redrawing one terminal line would garble each other; through doit's
    pipe the stage sees no terminal and prints a line per evaluation, prefixed with its model.
    """
    return CmdAction(stage_command(*args), shell=False, env=stage_env(cfg))


def code(*modules: str) -> list[str]:
    """The package files a stage's modules run (their import closure), so editing any reruns it;
    plus the entry point and the stage list the action starts through (not their imports: they
    dispatch to every stage)."""
    entry = [PACKAGE_DIR / "__main__.py", PACKAGE_DIR / "pipeline" / "stages.py"]
    return sorted({str(p) for p in [*closure.closure(*modules), *entry]})


def trained_with(metrics: Path, settings: dict) -> bool:
    """The metrics file itself, not doit's database, says which settings trained the weights:
    a kill after training but before doit saved its state must not pass off old weights."""
    try:
        return records.read(records.Metrics, metrics).trained_with(settings)
    except records.SchemaError:
        return False


def compiled_from(manifest: Path, weights: Path, forms: tuple[str, ...]) -> bool:
    """The manifest itself, not doit's database, says the compile is current: it names the
    weights it was compiled from and the digest of every form file. An interrupt between the
    form files and the manifest leaves a mix doit would otherwise take as up to date."""
    try:
        m = records.read(records.Manifest, manifest)
    except records.SchemaError:
        return False
    if sorted(f.form for f in m.forms) != sorted(forms):
        return False
    try:
        return m.compiled_from(Path(weights)) and not m.file_problems(manifest)
    except OSError:
        return False


def remove_outputs(paths: list[Path], stop: Path = PROJECT.root) -> None:
    """`doit clean` for a task's files: remove them, then each folder they leave empty, up to `stop`."""
    stop = Path(stop).resolve()
    for path in map(Path, paths):
        path.unlink(missing_ok=True)
        folder = path.resolve().parent
        while folder != stop and folder.is_relative_to(stop):
            try:
                folder.rmdir()
            except OSError:  # not empty (another task's outputs), or already gone
                break
            folder = folder.parent


def remove_tree(path: Path) -> None:
    """`doit clean` for a directory output, and the build/ folders it leaves empty (the lock too,
    unless a build holds it)."""
    shutil.rmtree(path, ignore_errors=True)
    from mnist_webgpu.pipeline import lock

    lock.remove_if_free(PROJECT.build)
    for folder in (PROJECT.build / "models", PROJECT.build / "webgpu", PROJECT.build):
        with contextlib.suppress(OSError):
            folder.rmdir()


def data_task(cfg: config.Config) -> dict:
    cache_dir = cfg.cache_dir()
    return {
        "doc": STAGES["data"].doc,
        "actions": [stage(cfg, "data")],
        "targets": [str(p) for p in data.paths(cache_dir).values()],
        # digests, not timestamps, decide: a truncated cache file makes the task run again
        "uptodate": [lambda: data.is_complete(cache_dir)],
        "verbosity": 2,
    }


def drawings_task(cfg: config.Config) -> dict:
    from mnist_webgpu.data import pendigits
    from mnist_webgpu.drawings import pad as drawings

    made_with = drawings.settings(cfg)
    return {
        "doc": STAGES["drawings"].doc,
        "actions": [stage(cfg, "drawings")],
        "file_dep": [*(str(p) for p in data.paths(cfg.cache_dir()).values()), str(pendigits.SOURCE)]
        + code("drawings.pad"),
        "targets": [str(PROJECT.drawings)],
        # the file itself says what it was made from, as metrics.json does for a model
        "uptodate": [config_changed(made_with), lambda: drawings.is_current(PROJECT.drawings, made_with)],
        "clean": [(remove_outputs, [[PROJECT.drawings]])],
        "verbosity": 2,
    }


def train_tasks(cfg: config.Config):
    """One `train:<model>` task per model: it reruns when that model's own settings change."""
    data_files = [str(p) for p in data.paths(cfg.cache_dir()).values()]
    for name in cfg.model_names:
        yield {
            "name": name,
            "doc": f"{name}: {STAGES['train'].doc}",
            "actions": [side_by_side_stage(cfg, "train", name)],
            "file_dep": [*data_files, str(PROJECT.drawings), *code("train.stage")],
            # one dict per task: doit keeps a single config_changed hash for each
            "uptodate": [
                config_changed(settings := training_settings(cfg.train, cfg.model(name))),
                functools.partial(trained_with, PROJECT.train_outputs(name).metrics, settings),
            ],
            "targets": [str(p) for p in PROJECT.train_outputs(name).all()],
            "clean": [(remove_outputs, [PROJECT.train_outputs(name).all()])],
            "verbosity": 2,
        }


def sweep_tasks(cfg: config.Config):
    """`sweep`: run the [sweep] Optuna studies with local workers, then export the record.

    The storage (not doit's database) knows which trials are done, so the task always
    runs: a finished study costs a look at the storage and an export. Not part of `build`.
    """

    stage = STAGES["sweep"]

    def command(**values) -> list[str]:
        return stage_command("sweep", *stage.argv(values))

    return {
        "basename": "sweep",
        "doc": stage.doc,
        "actions": [Interactive(command, shell=False, env=stage_env(cfg))],
        "task_dep": ["data", "drawings"],
        "params": [flag.doit_param() for flag in stage.flags],
        "uptodate": [False],
        "verbosity": 2,
    }


def site_task(cfg: config.Config) -> dict:
    """Render the static site into the staging directory build/site/ (verify + swap come after)."""
    from mnist_webgpu.site import render as site

    out = PROJECT.site_staging
    return {
        "doc": STAGES["site"].doc,
        "actions": [stage(cfg, "site")],
        "file_dep": [str(p) for p in site.input_files(cfg)] + code("site.render"),
        "targets": [str(out / "index.html")],
        "uptodate": [config_changed(site.settings(cfg))],
        "clean": [(remove_tree, [out])],
        "verbosity": 2,
    }


def verify_task(cfg: config.Config) -> dict:
    from mnist_webgpu.publish import verify

    gates = {m.name: m.min_test_accuracy for m in cfg.models}
    trained = {m.name: training_settings(cfg.train, m) for m in cfg.models}
    return {
        "doc": STAGES["verify"].doc,
        "actions": [stage(cfg, "verify")],
        "task_dep": ["site"],
        "file_dep": [str(PROJECT.train_outputs(n).metrics) for n in cfg.model_names] + code("publish.verify"),
        # dist/ is up to date exactly when it is a byte-for-byte copy of the staged site
        "uptodate": [
            lambda: verify.same_tree(PROJECT.site_staging, PROJECT.dist),
            config_changed({"gates": gates, "models": trained}),
        ],
        "clean": [(remove_tree, [PROJECT.dist])],
        "verbosity": 2,
    }


def build_task() -> dict:
    return {
        "doc": "build everything: data, train, compile, site, verify into dist/ (the default task)",
        "actions": None,
        "task_dep": ["verify"],
    }


def deploy_task(cfg: config.Config) -> dict:
    stage = STAGES["deploy"]

    def command(**values) -> list[str]:
        return stage_command("deploy", *stage.argv(values))

    return {
        "doc": f"build, then {stage.doc}",
        "actions": [Interactive(command, shell=False, env=stage_env(cfg))],
        "task_dep": ["build"],
        "params": [flag.doit_param() for flag in stage.flags],
        "uptodate": [False],
        "verbosity": 2,
    }


def bench_task(cfg: config.Config) -> dict:
    def command(quick: bool) -> list[str]:
        return [sys.executable, str(BENCH_DIR / "run.py"), *["--quick"] * quick]

    return {
        "doc": "measure the built site against ONNX Runtime Web, build times and payload into build/bench/",
        "actions": [Interactive(command, shell=False, env=stage_env(cfg))],
        # it measures dist/ and build/webgpu/, so they must be current; `doit build` never runs it
        "task_dep": ["build"],
        "params": [
            {
                "name": "quick",
                "long": "quick",
                "type": bool,
                "default": False,
                "help": "few repetitions of every part (what CI runs); figures not for quoting",
            }
        ],
        "uptodate": [False],
        "verbosity": 2,
    }


def serve_task(cfg: config.Config) -> dict:
    stage = STAGES["serve"]

    def run(**values) -> bool:
        # Ctrl+C reaches the server and doit alike: the server stops quietly, and doit's
        # side says so in one line instead of a KeyboardInterrupt traceback
        try:
            return (
                subprocess.run(stage_command("serve", *stage.argv(values)), env=stage_env(cfg)).returncode
                == 0
            )
        except KeyboardInterrupt:
            print("serve: stopped", flush=True)
            return True

    (port,) = stage.flags
    return {
        "doc": stage.doc,
        "actions": [(run,)],
        "params": [port.doit_param(default=cfg.serve.port)],
        "uptodate": [False],
        "verbosity": 2,
    }


def compile_tasks(cfg: config.Config):
    """One `compile:<name>` subtask per model: trained weights -> WGSL kernels, manifest, weight forms."""
    for name in cfg.model_names:
        # the training settings include [train], so the splits forms are scored on are covered
        settings = {
            "model": training_settings(cfg.train, cfg.model(name)),
            "export": dataclasses.asdict(cfg.export),
        }
        yield {
            "name": name,
            "doc": f"{name}: {STAGES['compile'].doc}",
            "actions": [stage(cfg, "compile", name)],
            "file_dep": [
                str(PROJECT.train_outputs(name).weights),
                str(PROJECT.train_outputs(name).metrics),  # the decline rule calibrated for them
                *map(str, data.paths(cfg.cache_dir()).values()),
                *code("export.webgpu"),
            ],
            "targets": [str(p) for p in PROJECT.compile_outputs(name, cfg.export.forms)],
            "uptodate": [
                config_changed(settings),
                functools.partial(
                    compiled_from,
                    PROJECT.manifest(name),
                    PROJECT.train_outputs(name).weights,
                    cfg.export.forms,
                ),
            ],
            "clean": [(remove_outputs, [PROJECT.compile_outputs(name, cfg.export.forms)])],
            "verbosity": 2,
        }
