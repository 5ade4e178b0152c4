"""Publishing with real git: a source repository and a local bare remote; hostile or broken
remotes (options posing as names, remotes that fail or never answer)."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from kits.projectkit import git

from mnist_webgpu.core import config
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


# --- hostile and broken remotes -----------------------------------------------------------
# Deploy against hostile or broken remotes, with real git: options smuggled in as names,
# remotes that fail or never answer (a local TCP server that accepts and stays silent).


def test_an_option_posing_as_the_remote_runs_nothing(deploy_repo, tmp_path):  # noqa: F811
    repo, remote, site = deploy_repo
    witness = tmp_path / "ran"
    for bad in (f"--upload-pack=touch {witness}", f"--receive-pack=touch {witness}"):
        with pytest.raises(deploy.DeployError, match="looks like an option to git"):
            deploy.publish(repo, site, DeployConfig(remote=bad))
    assert not witness.exists()
    assert git(remote, "branch", "--list") == ""


# a full ref is refused, not published as refs/heads/refs/heads/x
@pytest.mark.parametrize(
    "branch", ["-f", "--force", "a..b", "x.lock", "@{-1}", "a//b", ".hidden", "a b", "refs/heads/x"]
)
def test_branch_names_git_refuses_are_refused(deploy_repo, branch):  # noqa: F811
    repo, remote, site = deploy_repo
    with pytest.raises(deploy.DeployError, match="is not a valid branch name"):
        deploy.publish(repo, site, DeployConfig(branch=branch))
    assert git(remote, "branch", "--list") == ""


def test_a_cname_that_is_no_host_name_is_never_published(deploy_repo):  # noqa: F811
    repo, remote, site = deploy_repo
    with pytest.raises(deploy.DeployError, match=r"deploy.cname: 'not a domain!' is not a DNS host name"):
        deploy.publish(repo, site, DeployConfig(cname="not a domain!"))
    assert git(remote, "branch", "--list") == ""


@pytest.mark.parametrize("branch", ["-f", "a..b", "x.lock", "a//b", "refs/heads/x"])
def test_config_refuses_the_same_branch_names(tmp_path, branch):
    path = tmp_path / "c.toml"
    path.write_text(f'[models.m]\narch = "mlp"\n[deploy]\nbranch = "{branch}"\n')
    with pytest.raises(config.ConfigError, match="deploy.branch: expected a branch name git accepts"):
        config.load(path)


@pytest.mark.parametrize(
    ("remote", "reason"),
    [
        ("nowhere", "fatal: 'nowhere' does not appear to be a git repository"),
        ("/no/such/path.git", "fatal: '/no/such/path.git' does not appear to be a git repository"),
    ],
)
def test_a_failing_remote_shows_gits_own_reason(deploy_repo, remote, reason):  # noqa: F811
    repo, _, site = deploy_repo
    with pytest.raises(deploy.DeployError) as info:
        deploy.publish(repo, site, DeployConfig(remote=remote))
    assert str(info.value) == f"remote '{remote}' cannot be reached: git ls-remote failed: {reason}"


@pytest.fixture
def silent_server():
    """Accepts TCP connections on 127.0.0.1 and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_a_remote_that_never_answers_times_out(deploy_repo, silent_server):  # noqa: F811
    repo, _, site = deploy_repo
    start = time.monotonic()
    with pytest.raises(deploy.DeployError) as info:
        deploy.publish(repo, site, DeployConfig(remote=f"http://127.0.0.1:{silent_server}/x.git"), timeout=2)
    assert time.monotonic() - start < 10
    url = f"http://127.0.0.1:{silent_server}/x.git"
    assert str(info.value) == f"remote '{url}' cannot be reached: git ls-remote gave no answer in 2 s"


def test_an_unchanged_redeploy_makes_no_commit(deploy_repo):  # noqa: F811
    repo, remote, site = deploy_repo
    first = deploy.publish(repo, site, DeployConfig())
    assert first.pushed and not first.unchanged
    again = deploy.publish(repo, site, DeployConfig())
    assert again.unchanged and not again.pushed and again.message == "already published"
    assert git(remote, "rev-parse", "gh-pages") == first.commit
    assert git(remote, "rev-list", "--count", "gh-pages") == "1"
    (site / "index.html").write_text("<!doctype html><title>changed</title>")
    changed = deploy.publish(repo, site, DeployConfig())
    assert changed.pushed and git(remote, "rev-list", "--count", "gh-pages") == "2"


def test_git_reason_is_the_fatal_line_not_the_advice():
    stderr = (
        b"fatal: 'x' does not appear to be a git repository\n"
        b"fatal: Could not read from remote repository.\n\n"
        b"Please make sure you have the correct access rights\nand the repository exists.\n"
    )
    assert deploy._reason(stderr, 128) == "fatal: 'x' does not appear to be a git repository"
