"""A source repository with a built dist/ and a bare remote: the `project` fixture of the deploy tests."""

from __future__ import annotations

import pytest

from kits.projectkit import GIT_IDENTITY, git


@pytest.fixture
def deploy_repo(tmp_path, monkeypatch):
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    remote = tmp_path / "remote.git"
    git(tmp_path, "init", "--quiet", "--bare", str(remote))
    repo = tmp_path / "src"
    repo.mkdir()
    git(repo, "init", "--quiet", "-b", "main")
    (repo / ".gitignore").write_text("dist/\n")
    (repo / "README.md").write_text("source\n")
    git(repo, "add", ".")
    git(repo, "commit", "--quiet", "-m", "source")
    git(repo, "remote", "add", "origin", str(remote))
    site = repo / "dist"
    (site / "assets").mkdir(parents=True)
    (site / "index.html").write_text("<!doctype html><title>x</title>")
    (site / "assets" / "app.0123abcd.js").write_text("export {};\n")
    (site / "weights.bin").write_bytes(bytes(range(256)))
    return repo, remote, site
