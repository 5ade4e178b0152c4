"""A throwaway copy of the project, for tests that run the real doit on it."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ("dodo.py", "src", "templates", "site_src")


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
