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

from . import config, data, schemas, sources
from .config import training_settings
from .layout import PROJECT
from .machine import cpu_cores

PACKAGE_DIR = Path(__file__).resolve().parent
SRC_DIR = PACKAGE_DIR.parent
BENCH_DIR = SRC_DIR.parent / "bench"  # the checkout's bench/ scripts: not part of the installed package


PARALLEL_TASKS = cpu_cores()  # doit runs this many tasks at once


def load_config_or_exit() -> config.Config:
    try:
        return config.load()
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
    plus the command-line entry point the action starts through (not its imports: it dispatches
    to every stage)."""
    return [str(p) for p in sources.closure(*modules)] + [str(PACKAGE_DIR / "__main__.py")]


def trained_with(metrics: Path, settings: dict) -> bool:
    """The metrics file itself, not doit's database, says which settings trained the weights:
    a kill after training but before doit saved its state must not pass off old weights."""
    try:
        return schemas.read(schemas.Metrics, metrics).trained_with(settings)
    except schemas.SchemaError:
        return False


def compiled_from(manifest: Path, weights: Path, forms: tuple[str, ...]) -> bool:
    """The manifest itself, not doit's database, says the compile is current: it names the
    weights it was compiled from and the digest of every form file. An interrupt between the
    form files and the manifest leaves a mix doit would otherwise take as up to date."""
    try:
        m = schemas.read(schemas.Manifest, manifest)
    except schemas.SchemaError:
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
    from . import lock

    lock.remove_if_free(PROJECT.build)
    for folder in (PROJECT.build / "models", PROJECT.build / "webgpu", PROJECT.build):
        with contextlib.suppress(OSError):
            folder.rmdir()


def data_task(cfg: config.Config) -> dict:
    cache_dir = cfg.cache_dir()
    return {
        "doc": f"download and verify the four MNIST files into {cache_dir}",
        "actions": [stage(cfg, "data")],
        "targets": [str(p) for p in data.paths(cache_dir).values()],
        # digests, not timestamps, decide: a truncated cache file makes the task run again
        "uptodate": [lambda: data.is_complete(cache_dir)],
        "verbosity": 2,
    }


def drawings_task(cfg: config.Config) -> dict:
    from . import drawings, pendigits

    made_with = drawings.settings(cfg)
    return {
        "doc": f"draw digits and non-digits as the page sees them into {PROJECT.drawings}",
        "actions": [stage(cfg, "drawings")],
        "file_dep": [*(str(p) for p in data.paths(cfg.cache_dir()).values()), str(pendigits.SOURCE)]
        + code("drawings"),
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
            "doc": f"train the {name} model into {PROJECT.model_dir(name)}",
            "actions": [side_by_side_stage(cfg, "train", name)],
            "file_dep": [*data_files, str(PROJECT.drawings), *code("train")],
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

    def command(storage: str, workers: int, devices: str) -> list[str]:
        flags = ["--workers", str(workers)] + ["--storage", storage] * bool(storage)
        return stage_command("sweep", *flags, *["--devices", devices] * bool(devices))

    return {
        "basename": "sweep",
        "doc": "run the [sweep] Optuna studies (validation split only); export sweeps/, HYPERPARAMETERS.md",
        "actions": [Interactive(command, shell=False, env=stage_env(cfg))],
        "task_dep": ["data", "drawings"],
        "params": [
            {
                "name": "storage",
                "long": "storage",
                "type": str,
                "default": "",
                "help": "Optuna storage URL (default: [sweep] storage, else SQLite in build/sweep/)",
            },
            {
                "name": "workers",
                "long": "workers",
                "type": int,
                "default": 1,
                "help": "worker processes on this machine (0: only export the record)",
            },
            {
                "name": "devices",
                "long": "devices",
                "type": str,
                "default": "",
                "help": "one worker per tinygrad device, e.g. CUDA:0,CUDA:1",
            },
        ],
        "uptodate": [False],
        "verbosity": 2,
    }


def site_task(cfg: config.Config) -> dict:
    """Render the static site into the staging directory build/site/ (verify + swap come after)."""
    from . import site

    out = PROJECT.site_staging
    return {
        "doc": f"render the web app and model pages into {out}",
        "actions": [stage(cfg, "site")],
        "file_dep": [str(p) for p in site.input_files(cfg)] + code("site"),
        "targets": [str(out / "index.html")],
        "uptodate": [config_changed(site.settings(cfg))],
        "clean": [(remove_tree, [out])],
        "verbosity": 2,
    }


def verify_task(cfg: config.Config) -> dict:
    from . import verify

    gates = {m.name: m.min_test_accuracy for m in cfg.models}
    trained = {m.name: training_settings(cfg.train, m) for m in cfg.models}
    return {
        "doc": "check the staged site (links, weights, accuracy gates), then swap it into dist/",
        "actions": [stage(cfg, "verify")],
        "task_dep": ["site"],
        "file_dep": [str(PROJECT.train_outputs(n).metrics) for n in cfg.model_names] + code("verify"),
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
    def command(dry_run: bool, allow_dirty: bool) -> list[str]:
        flags = ["--dry-run"] * dry_run + ["--allow-dirty"] * allow_dirty
        return stage_command("deploy", *flags)

    return {
        "doc": f"build, verify, then publish dist/ to {cfg.deploy.remote} {cfg.deploy.branch}",
        "actions": [Interactive(command, shell=False, env=stage_env(cfg))],
        "task_dep": ["build"],
        "params": [
            {"name": "dry_run", "long": "dry-run", "type": bool, "default": False, "help": "push nothing"},
            {
                "name": "allow_dirty",
                "long": "allow-dirty",
                "type": bool,
                "default": False,
                "help": "publish even when the source tree has uncommitted changes",
            },
        ],
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
    def run(port: int) -> bool:
        # Ctrl+C reaches the server and doit alike: the server stops quietly, and doit's
        # side says so in one line instead of a KeyboardInterrupt traceback
        try:
            return (
                subprocess.run(stage_command("serve", "--port", str(port)), env=stage_env(cfg)).returncode
                == 0
            )
        except KeyboardInterrupt:
            print("serve: stopped", flush=True)
            return True

    return {
        "doc": f"serve dist/ on http://127.0.0.1:{cfg.serve.port}/ for a local preview",
        "actions": [(run,)],
        "params": [
            {
                "name": "port",
                "short": "p",
                "long": "port",
                "type": int,
                "default": cfg.serve.port,
                "help": "TCP port on 127.0.0.1 (0: any free one, printed)",
            }
        ],
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
            "doc": f"compile model {name!r} to WGSL kernels and weight files",
            "actions": [stage(cfg, "compile", name)],
            "file_dep": [
                str(PROJECT.train_outputs(name).weights),
                str(PROJECT.train_outputs(name).metrics),  # the decline rule calibrated for them
                *map(str, data.paths(cfg.cache_dir()).values()),
                *code("export"),
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
