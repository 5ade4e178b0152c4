"""The README's quick start is what CI runs: keep the two commands and .ci/run in step."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section)


def test_quick_start_is_two_commands():
    build, test = quick_start_commands()
    assert build.startswith("scripts/setup.sh ") and build.endswith("doit build")
    assert test.startswith("scripts/setup.sh --test ") and "pytest" in test


def test_ci_runs_the_readme_test_command_verbatim():
    ci_lines = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci_lines[-1] == quick_start_commands()[1]
