"""doit task factories: what each stage depends on and produces. `dodo.py` exposes them.

Every action is a subprocess `python -m mnist_webgpu <stage>` so tinygrad's environment
is set per stage and a failure is one line and a non-zero exit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from doit.tools import Interactive, config_changed

from . import config, data
from .export_paths import inputs, outputs, weights_path

PACKAGE_DIR = Path(__file__).resolve().parent
SRC_DIR = PACKAGE_DIR.parent


def load_config_or_exit() -> config.Config:
    try:
        return config.load()
    except config.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def stage(cfg: config.Config, *args: str) -> Interactive:
    """Run one pipeline stage in a child process that inherits the terminal (progress bars)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC_DIR), env.get("PYTHONPATH")]))
    env[config.CONFIG_ENV] = str(cfg.path)
    return Interactive([sys.executable, "-m", "mnist_webgpu", *args], shell=False, env=env)


def sources(*modules: str) -> list[str]:
    """The source files of the modules an action runs, so editing them reruns it."""
    return [str(PACKAGE_DIR / f"{m}.py") for m in modules]


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


def compile_tasks(cfg: config.Config):
    """One `compile:<name>` subtask per model: trained weights -> WGSL kernels, manifest, weight forms."""
    code = sources("export", "export_paths", "forms", "models", "data", "files", "config")
    for name in cfg.model_names:
        yield {
            "name": name,
            "doc": f"compile model {name!r} to WGSL kernels and weight files",
            "actions": [stage(cfg, "compile", name)],
            "file_dep": [
                str(weights_path(cfg, name)),
                *map(str, data.paths(cfg.cache_dir()).values()),
                *code,
            ],
            "targets": [str(p) for p in outputs(cfg, name)],
            "uptodate": [config_changed(inputs(cfg, name))],
            "clean": True,
            "verbosity": 2,
        }
