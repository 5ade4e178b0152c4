"""`doit clean` removes what the tasks made, folders included, and leaves the rest alone."""

from __future__ import annotations

import os
import subprocess
import sys

from project import copy_project
from test_kills import MLP_ONLY

from mnist_webgpu import config
from mnist_webgpu.layout import Layout


def test_doit_clean_removes_outputs_and_the_folders_they_leave_empty(tmp_path, mnist_cache):
    root = copy_project(tmp_path / "p", MLP_ONLY)
    layout = Layout(root)
    cfg = config.load(root / "config.toml")
    made = [*layout.train_outputs("mlp").all(), *layout.compile_outputs("mlp", cfg.export.forms)]
    made += [
        layout.site_staging / "index.html",
        layout.dist / "index.html",
        layout.dist / "models" / "m.json",
    ]
    made.append(layout.build / "build.lock")
    for path in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    keep = layout.build / "sweep" / "results.json"  # not a build output: a sweep's record
    keep.parent.mkdir(parents=True)
    keep.write_text("{}")
    env = {**os.environ, config.CACHE_ENV: str(mnist_cache)}
    env.pop(config.CONFIG_ENV, None)
    done = subprocess.run(
        [sys.executable, "-m", "doit", "clean"], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    left = sorted(p.relative_to(root).as_posix() for p in (root / "build").rglob("*"))
    assert left == ["build/sweep", "build/sweep/results.json"]
    assert not layout.dist.exists()
    keep.unlink()
    keep.parent.rmdir()
    again = subprocess.run(
        [sys.executable, "-m", "doit", "clean"], cwd=root, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert not (root / "build").exists()
    assert (root / "config.toml").is_file() and (root / "src").is_dir()
