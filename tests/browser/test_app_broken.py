"""A broken model on the page, with the real runtime and compiled models in headless Chromium:
a weight file whose SHA-256 is not the manifest's, a decline rule the page cannot compute
with, or weights whose outputs overflow, is shown as a broken model with a retry, never as
an answer or as "?". (http://127.0.0.1 is a secure context: crypto.subtle is there.)"""

from __future__ import annotations

import hashlib
import json
import shutil
import struct

import numpy as np
import pytest
from kits import appkit
from kits.appkit import SEVEN
from kits.projectkit import ROOT

from mnist_webgpu.core import config
from mnist_webgpu.core.layout import Layout
from mnist_webgpu.site import render as site

pytestmark = pytest.mark.slow  # trains and compiles the fast models, drives the app in Chromium
playwright = pytest.importorskip("playwright.sync_api")
MODEL = "mlp"


@pytest.fixture(scope="module")
def pristine(exported, tmp_path_factory):
    """The site of the exported project, with the runtime as it ships."""
    cfg = config.load(exported / "config.toml")
    paths = site.Paths(Layout(exported), ROOT / "templates", ROOT / "site_src", cfg.cache_dir())
    return site.render(cfg, tmp_path_factory.mktemp("broken") / "site", paths)


def manifest_path(root):
    return root / "models" / MODEL / "manifest.json"


def weights_path(root):
    m = json.loads(manifest_path(root).read_text())
    return root / "models" / MODEL / next(f["file"] for f in m["forms"] if f["form"] == m["default_form"])


def edit_manifest(root, change) -> None:
    m = json.loads(manifest_path(root).read_text())
    change(m)
    manifest_path(root).write_text(json.dumps(m))


def zero_weights(root) -> None:
    """Every weight zeroed, the header kept: a well-formed file, not the one the manifest names."""
    path = weights_path(root)
    blob = path.read_bytes()
    start = 8 + struct.unpack("<Q", blob[:8])[0]
    path.write_bytes(blob[:start] + bytes(len(blob) - start))


def huge_biases(root) -> None:
    """The first layer's biases at 3e38 (finite), its digest recorded: the outputs overflow."""
    from safetensors.numpy import load, save

    path = weights_path(root)
    tensors = load(path.read_bytes())
    bias = next(n for n in sorted(tensors) if n.endswith("bias") and tensors[n].dtype == np.float32)
    tensors[bias] = np.full_like(tensors[bias], 3e38)
    blob = save(tensors)
    path.write_bytes(blob)

    def record(m) -> None:
        form = next(f for f in m["forms"] if f["file"] == path.name)
        form.update(bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())

    edit_manifest(root, record)


@pytest.fixture
def page(browser, tmp_path, pristine):
    def open_(damage=None):
        root = tmp_path / "site"
        shutil.copytree(pristine, root)
        if damage:
            damage(root)
        stack.append(appkit.serve(root))
        base = stack[-1].__enter__()
        s = appkit.Session(browser, base)
        sessions.append(s)
        return s.open(f"index.html?model={MODEL}")

    stack, sessions = [], []
    yield open_
    for s in sessions:
        s.check_clean()
        s.close()
    for server in stack:
        server.__exit__(None, None, None)


def assert_broken(s, reason: str) -> None:
    s.page.wait_for_selector('[data-testid="app"][data-state="broken"]', state="attached", timeout=30000)
    assert s.prediction() == "", "a broken model must not answer, not even '?'"
    assert s.page.locator("#verdict-label").inner_text() == "The MLP model is broken"
    assert s.el("retry").is_visible()
    status = s.el("status").inner_text()
    assert status.startswith("The MLP model is broken: ") and reason in status, status


def test_the_pristine_model_answers(page):
    s = page().ready()
    s.draw(SEVEN)
    s.wait_prediction()
    assert s.prediction().isdigit()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (zero_weights, "its SHA-256 is not the one the manifest records"),
        (
            lambda root: edit_manifest(root, lambda m: m["decline"].update(temperature=0)),
            "decline.temperature is 0, not a number > 0",
        ),
        (
            lambda root: edit_manifest(root, lambda m: m["decline"].update(threshold=-1)),
            "decline.threshold is -1, not a fraction between 0 and 1",
        ),
        (
            lambda root: edit_manifest(root, lambda m: m["kernels"][0].update(dispatch=[0, 1, 1])),
            "kernels[0].dispatch is [0,1,1], not workgroup counts > 0",
        ),
    ],
    ids=["zeroed-weights", "temperature-0", "threshold-negative", "dispatch-0"],
)
def test_a_model_whose_files_cannot_be_trusted_is_broken_with_a_retry(page, damage, reason):
    s = page(damage)
    assert_broken(s, reason)
    s.el("retry").click()  # tried again: downloaded afresh, and still broken
    assert_broken(s, reason)


def test_outputs_that_are_not_finite_probabilities_are_a_broken_model(page):
    s = page(huge_biases).ready()
    s.draw(SEVEN)
    assert_broken(s, "its outputs are not finite probabilities")
