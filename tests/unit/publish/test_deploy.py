"""Publishing with real git: a source repository and a local bare remote."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from kits.projectkit import git

from mnist_webgpu.core.config import DeployConfig
from mnist_webgpu.publish import deploy


def snapshot(repo: Path) -> dict:
    """Everything a deploy must leave alone: HEAD, branches, index, working tree."""
    tracked = {
        str(p.relative_to(repo)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in repo.rglob("*")
        if p.is_file() and ".git" not in p.parts
    }
    return {
        "head": git(repo, "rev-parse", "HEAD"),
        "branches": git(repo, "for-each-ref", "refs/heads", "--format=%(refname) %(objectname)"),
        "index": hashlib.sha256((repo / ".git" / "index").read_bytes()).hexdigest(),
        "status": git(repo, "status", "--porcelain"),
        "files": tracked,
    }


def test_first_deploy_publishes_exactly_the_site_and_leaves_the_source_alone(deploy_repo):
    repo, remote, site = deploy_repo
    before = snapshot(repo)
    published = deploy.publish(repo, site, DeployConfig())
    assert snapshot(repo) == before

    listed = git(remote, "ls-tree", "-r", "--name-only", "gh-pages").splitlines()
    assert sorted(listed) == [".nojekyll", "assets/app.0123abcd.js", "index.html", "weights.bin"]
    blob = subprocess.run(["git", "show", "gh-pages:weights.bin"], cwd=remote, capture_output=True).stdout
    assert blob == bytes(range(256))
    message = git(remote, "log", "-1", "--format=%s", "gh-pages")
    assert message == f"Publish site built from {before['head']}"
    assert published.parent is None and published.pushed


def test_second_deploy_builds_on_the_published_branch(deploy_repo):
    repo, remote, site = deploy_repo
    first = deploy.publish(repo, site, DeployConfig(cname="digits.example.org"))
    (site / "index.html").write_text("<!doctype html><title>v2</title>")
    second = deploy.publish(repo, site, DeployConfig())
    assert second.parent == first.commit
    assert git(remote, "rev-parse", "gh-pages") == second.commit
    assert git(remote, "show", "gh-pages:index.html").endswith("v2</title>")
    assert "CNAME" in git(remote, "ls-tree", "--name-only", first.commit).splitlines()
    assert "CNAME" not in git(remote, "ls-tree", "--name-only", second.commit).splitlines()


def test_dirty_tree_is_refused_unless_allowed(deploy_repo):
    repo, remote, site = deploy_repo
    (repo / "README.md").write_text("edited\n")
    with pytest.raises(deploy.DeployError, match=r"uncommitted changes \(README.md\)"):
        deploy.publish(repo, site, DeployConfig())
    assert git(remote, "branch", "--list") == ""
    published = deploy.publish(repo, site, DeployConfig(), allow_dirty=True)
    assert published.message.endswith("(with uncommitted changes)")


def test_dry_run_pushes_nothing(deploy_repo):
    repo, remote, site = deploy_repo
    published = deploy.publish(repo, site, DeployConfig(), dry_run=True)
    assert not published.pushed
    assert ".nojekyll" in published.files and "index.html" in published.files
    assert git(remote, "branch", "--list") == ""


def test_unreachable_remote_is_one_clear_line(deploy_repo):
    repo, _, site = deploy_repo
    with pytest.raises(deploy.DeployError, match="remote 'nowhere' cannot be reached") as info:
        deploy.publish(repo, site, DeployConfig(remote="nowhere"))
    assert "\n" not in str(info.value)


def test_rejected_push_is_reported(deploy_repo):
    repo, remote, site = deploy_repo
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'deploys are frozen' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(deploy.DeployError, match="push to 'origin' branch 'gh-pages' was rejected"):
        deploy.publish(repo, site, DeployConfig())
    assert git(remote, "branch", "--list") == ""


def test_missing_site_is_refused(deploy_repo):
    repo, _, _ = deploy_repo
    with pytest.raises(deploy.DeployError, match="no index.html; run `doit build` first"):
        deploy.publish(repo, repo / "nothing", DeployConfig())
