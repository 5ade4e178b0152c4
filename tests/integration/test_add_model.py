"""A user's own model, added the way the README says: one class in models/zoo.py and one
[models.<name>] section. The real `doit build` must carry it to its page, the dropdown and
both browser backends, which must agree with tinygrad on the weights it ships."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from kits.browser_env import chromium_page, serve, stage_site
from kits.projectkit import FAST_CONFIG, ROOT, Project

pytestmark = pytest.mark.slow

IMAGES = 64
SECTION = """
[models.tiny]
arch = "tiny"
widths = [24]
lr = 0.003
lr_schedule = "constant"
batch_size = 64
steps = 60
eval_every = 30
seed = 3
"""


def readme_model() -> str:
    """The class the README shows under "Adding a model", as a user would paste it."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Adding a model") :]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


def only_mlp(text: str) -> str:
    """The fast config without its CNN: the cheapest build that still has a second model."""
    return re.sub(r"(?ms)^\[models\.cnn\]\n.*?(?=^\[)", "", text)


@pytest.fixture(scope="module")
def project(tmp_path_factory, mnist_cache) -> Project:
    project = Project.copy(tmp_path_factory.mktemp("add-model") / "project", mnist_cache)
    config_text = only_mlp(FAST_CONFIG.read_text())
    before = {p: p.read_bytes() for p in (project.root / "src").rglob("*") if p.is_file()}
    zoo = project.root / "src" / "mnist_webgpu" / "models" / "zoo.py"
    zoo.write_text(zoo.read_text() + "\n\n" + readme_model())
    project.write_config(config_text + SECTION)
    changed = [
        p for p in (project.root / "src").rglob("*") if p.is_file() and before.get(p) != p.read_bytes()
    ]
    assert changed == [zoo]  # the class and the section: nothing else was touched
    project.doit("build")
    return project


def test_the_build_puts_the_new_model_on_the_site(project):
    dist = project.root / "dist"
    index = (dist / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<option value="tiny"[^>]*>Tiny — \d', index), "in the dropdown, by its label"
    page = (dist / "models" / "tiny.html").read_text(encoding="utf-8")
    assert "one layer of neurons, each seeing every pixel" in page  # its description, from the class
    manifest = json.loads((dist / "models" / "tiny" / "manifest.json").read_text())
    assert manifest["model"]["arch"] == "tiny" and manifest["model"]["label"] == "Tiny"


def tinygrad_logits(project: Project, form: str, images: np.ndarray) -> np.ndarray:
    """The reference, computed by the copy's own code: the class exists only there."""
    np.save(project.root / "images.npy", images)
    script = (
        "import sys, numpy as np; from kits.modelkit import reference_logits; from pathlib import Path; "
        f"np.save('want.npy', reference_logits(Path('.'), 'tiny', {form!r}, np.load('images.npy')))"
    )
    env = {**project.env, "PYTHONPATH": f"{project.root / 'src'}:{ROOT / 'tests'}"}
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=project.root, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return np.load(project.root / "want.npy")


@pytest.mark.parametrize("backend", ["webgpu", "cpu"])
def test_both_backends_run_the_new_model_as_tinygrad_does(project, mnist, tmp_path, backend):
    images = mnist.test_x[:IMAGES]
    stage_site(tmp_path, project.root, ["tiny"], images)
    want = tinygrad_logits(project, "f32", images)
    with serve(tmp_path) as url, chromium_page(url) as page:
        args = ["../models/tiny/manifest.json", {"backend": backend, "form": "f32"}, "../inputs.bin", IMAGES]
        result = page.evaluate("([m, o, i, c]) => harness.logits(m, o, i, c)", args)
        assert page.errors == []
    assert result["backend"] == backend and result["fallbackReason"] is None
    got = np.array(result["logits"], np.float32)
    assert got.shape == want.shape == (IMAGES, 11)
    assert np.abs(got - want).max() <= 1e-4
