"""The README's quick start is what CI runs: keep the two commands and .ci/run in step."""

from __future__ import annotations

import re

from kits.projectkit import ROOT


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


def test_pages_workflow_builds_with_the_readme_commands_and_deploys():
    import yaml

    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    triggers = workflow[True]  # YAML 1.1 reads the bare key `on` as a boolean
    assert triggers["push"]["branches"] == ["main"] and "workflow_dispatch" in triggers
    assert workflow["permissions"]["pages"] == "write" and workflow["permissions"]["id-token"] == "write"
    assert workflow["concurrency"]["group"] == "pages"

    steps = workflow["jobs"]["build"]["steps"]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert "actions/setup-python" in uses and "actions/upload-pages-artifact" in uses
    runs = [s["run"] for s in steps if "run" in s]
    build, test = quick_start_commands()
    assert runs == [test, build]  # tests first, then the build, exactly as the README says
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["path"] == "dist"
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] in workflow["jobs"]["build"]["env"]["MNIST_WEBGPU_CACHE"]

    deploy_steps = workflow["jobs"]["deploy"]["steps"]
    assert workflow["jobs"]["deploy"]["needs"] == "build"
    assert [s["uses"].split("@")[0] for s in deploy_steps] == ["actions/deploy-pages"]


def test_the_js_unit_tests_are_a_step_of_their_own():
    """`node --test` runs tests/js in the README's command; no Python test hides them inside."""
    steps = quick_start_commands()[1].split(" && ")
    (node,) = [s for s in steps if s.startswith("node --test ")]
    assert steps.index(node) < steps.index(".venv/bin/python -m pytest")
    named = {p for pattern in node.split()[2:] for p in ROOT.glob(pattern)}
    assert named == set((ROOT / "tests" / "js").glob("*.test.mjs")) and named
    wrapper = '"node", "--' + 'test"'  # split, so this file does not match itself
    for path in (ROOT / "tests").rglob("test_*.py"):
        assert wrapper not in path.read_text(), f"{path.relative_to(ROOT)} runs node --test itself"
