"""The whole task graph, run by the real doit in a temporary copy of the project.

One build on the fast config (conftest's `built_once`); each test gets its own copy of it and
makes one kind of change, asserting which tasks ran.
"""

from __future__ import annotations

import json
import re

import drawn_digits
import numpy as np
import pytest
from kits.projectkit import FAST_MODELS, git, task_status

pytestmark = pytest.mark.slow


def test_first_build_runs_every_stage_but_the_cached_data(built_once):
    # data is already cached by the mnist_cache fixture, so only the rest runs
    stages = {*(f"{stage}:{m}" for m in FAST_MODELS for stage in ("train", "compile")), "site", "verify"}
    assert stages <= built_once.first_build and "data" not in built_once.first_build


def test_model_pages_show_the_drawn_figures_and_the_decline_rule(built):
    for name in FAST_MODELS:
        metrics = json.loads((built.root / "build" / "models" / name / "metrics.json").read_text())
        html = (built.root / "dist" / "models" / f"{name}.html").read_text()
        shown = dict(
            re.findall(r'data-testid="(drawn-accuracy|drawn-declined|nondigits-declined)">([^<]+)<', html)
        )
        drawn = metrics["drawn_test"]
        assert shown == {
            "drawn-accuracy": f"{drawn['accuracy'] * 100:.2f}%",
            "drawn-declined": f"{drawn['declined'] * 100:.2f}%",
            "nondigits-declined": f"{drawn['nondigits_declined'] * 100:.2f}%",
        }
        assert f"exceeds {metrics['decline']['threshold']:.3f}" in html


def test_model_pages_show_the_validation_writers_figures(built):
    for name in FAST_MODELS:
        pen = json.loads((built.root / "build" / "models" / name / "metrics.json").read_text())["pen_val"]
        html = (built.root / "dist" / "models" / f"{name}.html").read_text()
        shown = dict(re.findall(r'data-testid="(pen-accuracy|pen-worst)">([^<]+)<', html))
        assert shown == {
            "pen-accuracy": f"{pen['accuracy'] * 100:.2f}%",
            "pen-worst": f"{pen['worst_accuracy'] * 100:.2f}%",
        }
        assert pen["writers"] == 2 and set(pen["by_writer"]) == {"29", "30"}, "the fast config's writers"
        for writer, share in pen["by_writer"].items():
            assert f"<dt>no. {writer}</dt><dd>{share * 100:.1f}%</dd>" in html


def test_build_leaves_a_verified_dist(built):
    dist = built.root / "dist"
    for rel in ("index.html", "404.html", ".nojekyll", "models/mlp.html", "models/cnn/manifest.json"):
        assert (dist / rel).is_file(), rel
    assert not (built.root / "dist.new").exists() and not (built.root / "dist.old").exists()


def test_built_app_recognizes_drawn_test_digits_with_its_real_runtime(built, mnist):
    """Real models, real runtime, real pointer events: the drawn-digit bench in quick mode."""
    rng = np.random.default_rng(1)
    pick = rng.choice(len(mnist.test_y), 40, replace=False)
    requests, console = [], []
    conditions = [*drawn_digits.CONDITIONS, drawn_digits.FIDELITY]
    results = drawn_digits.measure(
        built.root / "dist",
        mnist.test_x[pick],
        mnist.test_y[pick],
        FAST_MODELS,
        conditions,
        on_page=lambda page: (
            page.on("request", lambda r: requests.append(r.url)),
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}")),
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}")),
        ),
    )
    for name, result in results.items():
        metrics = json.loads((built.root / "build" / "models" / name / "metrics.json").read_text())
        # the same 40 digits fed directly (deskewed, as the models see MNIST's), with the
        # weights the page loaded: a paired comparison
        fed = drawn_digits.direct(built.root / "dist", name, mnist.test_x[pick], mnist.test_y[pick])
        direct = round(fed["accuracy"] * 40)  # digits of the 40 read
        print(
            f"{name}: "
            + ", ".join(f"{c} {result[c]['accuracy']:.1%}" for c in conditions)
            + f", same digits fed directly {fed['accuracy']:.1%}, test {metrics['test_accuracy']:.1%}"
        )
        # drawings of digits are read as digits. The "not a digit" rule refuses 1% of drawn
        # validation digits; these tiny models, their rule set by one drawing of 200, refuse ~2%
        # of held-out ones (metrics.json's drawn_test), so at most 4 of these 40 in any
        # condition. A page that misapplied the rule would refuse far more; the real models'
        # share is bench/drawn_digits.py's (0-1%)
        declined = {c: sum(p is None for p in result[c]["predictions"]) for c in conditions}
        print(f"{name}: declined {declined}, in the train stage {metrics['drawn_test']['declined']:.1%}")
        assert max(declined.values()) <= 4, declined
        # drawn row by row, a digit looks like itself to the tiny test models too: at most 3 of 40
        # change their answer for the worse; bench/drawn_digits.py measures the real models
        read = {c: round(result[c]["accuracy"] * 40) for c in conditions}  # counts: no float ties
        assert read[drawn_digits.FIDELITY] >= direct - 3
        # a centre line drawn with a pen is read near the digit itself, at any size
        for c in drawn_digits.CONDITIONS:
            assert read[c] >= direct - 8, c
    assert requests and all(url.startswith("http://127.0.0.1:") for url in requests)
    assert console == []


def test_second_build_runs_nothing(built):
    # how fast a no-op build is belongs to bench/build_times.py, not here
    again = built.doit("build")
    assert built.ran(again) == set(), again.stdout
    assert task_status(again.stdout)["site"] == "--", again.stdout  # considered, found up to date


def test_doit_list_describes_every_task(built):
    listing = built.doit("list").stdout
    for task in ("build", "data", "train", "compile", "site", "verify", "deploy", "serve"):
        assert re.search(rf"^{task}\s+\S", listing, re.M), listing


def test_template_change_rerenders_only(built):
    built.edit("templates/base.html", "</body>", "<!-- edited -->\n</body>")
    assert built.ran(built.doit("build")) == {"site", "verify"}
    assert "<!-- edited -->" in (built.root / "dist" / "index.html").read_text()


def test_site_setting_change_rerenders_only(built):
    built.edit("config.toml", 'title = "MNIST on WebGPU (test build)"', 'title = "Digits, retitled"')
    assert built.ran(built.doit("build")) == {"site", "verify"}
    assert "Digits, retitled" in (built.root / "dist" / "index.html").read_text()


def test_site_src_change_copies_only(built):
    style = built.root / "site_src" / "style.css"
    style.write_text(style.read_text() + "\n/* edited */\n")
    assert built.ran(built.doit("build")) == {"site", "verify"}
    css = [p for p in (built.root / "dist" / "assets").glob("style.*.css")]
    assert len(css) == 1 and "/* edited */" in css[0].read_text()


def test_one_models_hyperparameter_retrains_that_model_only(built):
    built.edit(
        "config.toml", "lr = 0.003\nlr_schedule", "lr = 0.002\nlr_schedule"
    )  # the mlp section comes first
    ran = built.ran(built.doit("build"))
    assert ran == {"train:mlp", "compile:mlp", "site", "verify"}, ran


def test_editing_the_training_code_retrains(built):
    built.edit("src/mnist_webgpu/train/trainer.py", '"""', '"""Edited for a test.\n')
    ran = built.ran(built.doit("build"))
    assert {"train:mlp", "train:cnn"} <= ran


def test_editing_the_sweep_or_the_wgsl_patch_retrains_nothing(built):
    """Code dependencies are per module: the sweep's search loop is no stage of the build, and the
    WGSL patch is the compile stage's alone."""
    built.edit("src/mnist_webgpu/sweep/study.py", '"""', '"""Edited for a test.\n')
    assert built.ran(built.doit("build")) == set()
    built.edit("src/mnist_webgpu/export/wgsl_patch.py", '"""', '"""Edited for a test.\n')
    ran = built.ran(built.doit("build"))
    assert {"compile:mlp", "compile:cnn"} <= ran and not {"train:mlp", "train:cnn", "drawings"} & ran, ran


def test_failed_gate_keeps_dist_and_deploy_publishes_nothing(built, tmp_path):
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", str(remote))
    built.git("remote", "add", "origin", str(remote))

    published = built.doit("deploy")
    head = built.git("rev-parse", "HEAD")
    assert git(remote, "log", "-1", "--format=%s", "gh-pages") == f"Publish site built from {head}"
    files = set(git(remote, "ls-tree", "-r", "--name-only", "gh-pages").splitlines())
    dist = {
        p.relative_to(built.root / "dist").as_posix() for p in (built.root / "dist").rglob("*") if p.is_file()
    }
    assert files == dist | {".nojekyll"}, published.stdout

    before = (built.root / "dist" / "index.html").read_bytes()
    built.edit("config.toml", "[models.mlp]\n", "[models.mlp]\nmin_test_accuracy = 0.9999\n")
    built.edit("templates/base.html", "</body>", "<!-- never published -->\n</body>")
    built.git("commit", "--quiet", "-am", "an impossible gate")
    failed = built.doit("deploy", check=False)
    assert failed.returncode != 0
    assert "models.mlp.min_test_accuracy: test accuracy" in failed.stderr
    assert (built.root / "dist" / "index.html").read_bytes() == before
    assert git(remote, "log", "-1", "--format=%s", "gh-pages") == f"Publish site built from {head}"


def test_dirty_tree_refuses_to_deploy(built):
    (built.root / "untracked.txt").write_text("dirty\n")
    result = built.doit("deploy", "--dry-run", check=False)
    assert result.returncode != 0
    assert "source tree has uncommitted changes (untracked.txt)" in result.stderr
