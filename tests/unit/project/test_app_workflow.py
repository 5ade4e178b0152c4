"""The Pages workflow stays on action majors that run on Node 24 (GitHub retires Node 20).

(tests/unit/project/test_readme.py keeps its steps running the README's commands.)"""

from __future__ import annotations

import yaml
from kits.projectkit import ROOT

# the first major of each action that runs on Node 24 (their release notes)
NODE24_MAJORS = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "actions/cache": 5,
    "actions/configure-pages": 6,
    "actions/upload-pages-artifact": 5,
    "actions/deploy-pages": 5,
}


def steps() -> list[dict]:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def test_every_action_runs_on_node_24():
    used = {}
    for step in steps():
        if "uses" in step:
            action, _, ref = step["uses"].partition("@")
            assert ref.startswith("v") and ref[1:].isdigit(), f"{step['uses']}: pin a major, vN"
            used[action] = int(ref[1:])
    assert set(used) == set(NODE24_MAJORS), f"actions changed: {sorted(used)}; check their Node runtime"
    old = {a: v for a, v in used.items() if v < NODE24_MAJORS[a]}
    assert not old, f"still on Node 20 majors: {old}"


def test_the_artifact_keeps_the_sites_dot_files():
    upload = next(s for s in steps() if s.get("uses", "").startswith("actions/upload-pages-artifact"))
    assert upload["with"]["include-hidden-files"] is True
