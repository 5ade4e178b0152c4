"""`doit clean` removes what the tasks made, folders included, and leaves the rest alone."""

from __future__ import annotations

import pytest
from kits.projectkit import MLP_ONLY, Project

from mnist_webgpu.core import config
from mnist_webgpu.core.layout import Layout


@pytest.mark.slow  # spawns doit
def test_doit_clean_removes_outputs_and_the_folders_they_leave_empty(tmp_path, mnist_cache):
    project = Project.copy(tmp_path / "p", mnist_cache, MLP_ONLY)
    root = project.root
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
    project.doit("clean")
    left = sorted(p.relative_to(root).as_posix() for p in (root / "build").rglob("*"))
    assert left == ["build/sweep", "build/sweep/results.json"]
    assert not layout.dist.exists()
    keep.unlink()
    keep.parent.rmdir()
    project.doit("clean")
    assert not (root / "build").exists()
    assert (root / "config.toml").is_file() and (root / "src").is_dir()
