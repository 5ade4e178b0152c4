"""A throwaway copy of the project and the real doit run in it, for the tests and the bench.

Tests and bench scripts import this module as kits.projectkit (pytest's pythonpath and each
script's sys.path have tests/); it never imports bench.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from mnist_webgpu.core import config

KITS = Path(__file__).resolve().parent
ROOT = KITS.parent.parent
PROJECT_FILES = ("dodo.py", "src", "templates", "site_src")
FAST_CONFIG = KITS / "fast.toml"
FAST_MODELS = list(config.load(FAST_CONFIG).model_names)  # every architecture of the zoo, tiny
# commits made in a copy must not depend on the user's git configuration
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
}
# doit's report: ".  name" for a task it executed, "-- name" for one it found up to date
_REPORT_LINE = re.compile(r"^(\.|--) +(\S+)$", re.M)


def copy_project(dest: Path, config_text: str | None = None) -> Path:
    """Copy what `doit` needs to plan and run every task into `dest`; optionally write its config."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, dest / name)
    if config_text is not None:
        (dest / "config.toml").write_text(config_text)
    return dest


def task_status(doit_stdout: str) -> dict[str, str]:
    """Task name -> '.' (ran) or '--' (up to date), from doit's own report lines."""
    return {m[2]: m[1] for m in _REPORT_LINE.finditer(doit_stdout)}


def tasks_ran(doit_stdout: str) -> list[str]:
    """The tasks doit executed, in the order it reported them."""
    return [name for name, status in task_status(doit_stdout).items() if status == "."]


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def free_port() -> int:
    """A port nothing listens on now (the caller binds it soon after; never a fixed one)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(cache: Path | None = None) -> dict[str, str]:
    """This environment without the variables that would point a run at another config or device."""
    env = {**os.environ, **GIT_IDENTITY}
    for var in (config.CONFIG_ENV, "DEV", "PYTHONPATH"):
        env.pop(var, None)
    if cache is not None:
        env[config.CACHE_ENV] = str(cache)
    return env


def stage_env(project: Path, cache: Path | None = None) -> dict[str, str]:
    """What `python -m mnist_webgpu <stage>` needs to run this checkout's code on `project`'s config."""
    env = clean_env(cache)
    env["PYTHONPATH"] = str(ROOT / "src")
    env[config.CONFIG_ENV] = str(project / "config.toml")
    return env


def stage_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mnist_webgpu", *args]


def run_stage(
    project: Path, *args: str, cache: Path | None = None, extra_env: dict[str, str] | None = None, **popen
) -> subprocess.CompletedProcess:
    """One stage through the real CLI, on `project`'s config.toml, in `project`."""
    return subprocess.run(
        stage_command(*args),
        cwd=project,
        env={**stage_env(project, cache), **(extra_env or {})},
        capture_output=True,
        text=True,
        **popen,
    )


def run_stages_per_model(
    project: Path, stages: tuple[str, ...], names: list[str]
) -> dict[str, subprocess.CompletedProcess]:
    """`stages` in order for each model, the models side by side as doit's parallel build runs
    them: a session fixture pays for the slowest model's kernel compiles, not their sum.
    Each model's last run (its first failure, if one failed)."""

    def chain(name: str) -> subprocess.CompletedProcess:
        for stage in stages:
            if (done := run_stage(project, stage, name)).returncode:
                break
        return done

    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        return dict(zip(names, pool.map(chain, names), strict=True))


def with_drawings(project: Path, drawings: Path) -> Path:
    """`project` with a drawings stage's output in place, ready for a train stage run alone."""
    (project / "build" / "data").mkdir(parents=True, exist_ok=True)
    shutil.copy(drawings, project / "build" / "data" / drawings.name)
    return project


class Project:
    """A project directory with the real doit run in it, on the shared MNIST cache."""

    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.env = clean_env(cache)

    @classmethod
    def copy(cls, dest: Path, cache: Path, config_text: str | None = None) -> Project:
        return cls(copy_project(dest, config_text), cache)

    def doit(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, "-m", "doit", *args], cwd=self.root, env=self.env, capture_output=True, text=True
        )
        if check:
            assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result

    @staticmethod
    def ran(result: subprocess.CompletedProcess) -> set[str]:
        """Tasks doit executed, as opposed to skipped as up to date."""
        return set(tasks_ran(result.stdout))

    def edit(self, rel: str, old: str, new: str) -> None:
        """Replace the first `old` in a file of the copy; fail if it is not there."""
        path = self.root / rel
        text = path.read_text()
        assert old in text, f"{old!r} not in {rel}"
        path.write_text(text.replace(old, new, 1))

    def write_config(self, text: str) -> None:
        (self.root / "config.toml").write_text(text)

    def git(self, *args: str) -> str:
        return git(self.root, *args, env=self.env)

    def commit_all(self, message: str) -> None:
        """A git repository holding the copy's sources (the site stamps the commit; deploy needs one)."""
        if not (self.root / ".git").exists():
            self.git("init", "--quiet", "-b", "main")
            (self.root / ".gitignore").write_text("build/\ndist/\n.doit.db*\n__pycache__/\n")
        self.git("add", ".")
        self.git("commit", "--quiet", "-m", message)


# one model of the fast config: the cheapest real build, for tests that kill or race builds
MLP_ONLY = FAST_CONFIG.read_text().split("[models.cnn]")[0] + (
    '[site]\ntitle = "kill test"\ndefault_model = "mlp"\nmisclassified_shown = 4\n'
)
