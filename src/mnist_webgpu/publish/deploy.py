"""Publish dist/ to a gh-pages branch with git plumbing.

Plain plumbing rather than ghp-import: the tree is built through a throwaway index and
pushed straight from a commit object, so the working tree, the index and every local
branch stay untouched, and each git failure becomes one clear line of ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mnist_webgpu.core.config import DeployConfig
from mnist_webgpu.core.errors import PipelineError
from mnist_webgpu.core.rules import BRANCH, HOST


class DeployError(PipelineError):
    """Publishing refused or failed; nothing was pushed."""


@dataclass(frozen=True)
class Published:
    commit: str  # the gh-pages commit
    parent: str | None  # the remote branch head it replaced (None on the first deploy)
    files: tuple[str, ...]  # the paths in the published tree
    message: str
    pushed: bool
    unchanged: bool = False  # the branch already holds exactly these files: nothing was committed


GIT_TIMEOUT = (
    120  # seconds for one git command: a remote that accepts and never answers must not hang a deploy
)
# git's network commands: never prompt, and give up on a transfer slower than 1 kB/s for 30 s
NETWORK_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
    "GIT_HTTP_LOW_SPEED_TIME": "30",
}


def _reason(stderr: bytes, returncode: int) -> str:
    """git's own reason: its first fatal:/error: line (the last line is often advice)."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    for line in lines:
        if line.startswith(("fatal:", "error:", "remote: error:", "! [")):
            return line
    return lines[0] if lines else f"exit {returncode}"


def _git(
    repo: Path, *args: str, env: dict | None = None, input: bytes | None = None, timeout: float = GIT_TIMEOUT
) -> str:
    # its own session, so a timeout ends git's helpers (ssh, git-remote-https) with it
    proc = subprocess.Popen(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **(env or {})},
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise DeployError(f"git {args[0]} gave no answer in {timeout:g} s") from None
    if proc.returncode != 0:
        raise DeployError(f"git {args[0]} failed: {_reason(err, proc.returncode)}")
    return out.decode().rstrip("\n")


def check_branch(repo: Path, branch: str) -> None:
    """The branch name as the config's rule and git itself judge it (git check-ref-format --branch)."""
    if not BRANCH.check(branch):  # an option to git, a reflog expression, a full ref
        raise DeployError(f"deploy.branch: {branch!r} is not a valid branch name (expected {BRANCH.expect})")
    try:
        _git(repo, "check-ref-format", "--branch", branch)
    except DeployError:
        raise DeployError(
            f"deploy.branch: {branch!r} is not a valid branch name (git check-ref-format)"
        ) from None


def check_remote(remote: str) -> None:
    if remote.startswith("-"):
        raise DeployError(f"deploy.remote: {remote!r} looks like an option to git, not a remote")


def source_commit(repo: Path) -> str:
    try:
        return _git(repo, "rev-parse", "HEAD")
    except DeployError:
        raise DeployError(f"{repo}: not a git repository with a commit to name as the source") from None


def dirty_paths(repo: Path) -> list[str]:
    status = _git(repo, "status", "--porcelain", "--untracked-files=normal")
    return [line[3:] for line in status.splitlines() if line]


def remote_head(repo: Path, remote: str, branch: str, timeout: float = GIT_TIMEOUT) -> str | None:
    """The remote branch's commit (None when the branch does not exist yet)."""
    try:
        out = _git(
            repo,
            "ls-remote",
            "--heads",
            "--",
            remote,
            f"refs/heads/{branch}",
            env=NETWORK_ENV,
            timeout=timeout,
        )
    except DeployError as exc:
        raise DeployError(f"remote '{remote}' cannot be reached: {exc}") from None
    return out.split()[0] if out else None


def build_tree(repo: Path, site: Path, cname: str) -> tuple[str, tuple[str, ...]]:
    """Write `site` (plus .nojekyll and CNAME) as a git tree object through a private index."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        extra = {".nojekyll": b""}
        if cname:
            extra["CNAME"] = cname.encode() + b"\n"
        entries = []
        for path in sorted(p for p in site.rglob("*") if p.is_file()):
            rel = path.relative_to(site).as_posix()
            if rel in extra:
                continue
            blob = _git(repo, "hash-object", "-w", "--", str(path.resolve()))
            entries.append(f"100644 {blob}\t{rel}")
        for rel, content in extra.items():
            blob = _git(repo, "hash-object", "-w", "--stdin", input=content)
            entries.append(f"100644 {blob}\t{rel}")
        _git(
            repo, "update-index", "--add", "--index-info", env=env, input="\n".join(entries).encode() + b"\n"
        )
        tree = _git(repo, "write-tree", env=env)
        files = tuple(sorted(e.split("\t", 1)[1] for e in entries))
    return tree, files


def publish(
    repo: Path,
    site: Path,
    cfg: DeployConfig,
    *,
    dry_run: bool = False,
    allow_dirty: bool = False,
    timeout: float = GIT_TIMEOUT,
) -> Published:
    """Commit `site` onto the remote's deploy branch and push it; refuse on a dirty tree."""
    repo, site = Path(repo), Path(site)
    if not (site / "index.html").is_file():
        raise DeployError(f"{site}: no index.html; run `doit build` first")
    check_remote(cfg.remote)
    check_branch(repo, cfg.branch)
    if cfg.cname and not HOST.check(cfg.cname):
        raise DeployError(f"deploy.cname: {cfg.cname!r} is not {HOST.expect}")
    source = source_commit(repo)
    dirty = dirty_paths(repo)
    if dirty and not allow_dirty:
        shown = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
        raise DeployError(f"source tree has uncommitted changes ({shown}); commit them or pass --allow-dirty")
    parent = remote_head(repo, cfg.remote, cfg.branch, timeout)
    if parent:
        _git(
            repo, "fetch", "--quiet", "--no-tags", "--", cfg.remote, parent, env=NETWORK_ENV, timeout=timeout
        )
    tree, files = build_tree(repo, site, cfg.cname)
    message = f"Publish site built from {source}" + (" (with uncommitted changes)" if dirty else "")
    if parent and _git(repo, "rev-parse", f"{parent}^{{tree}}") == tree:
        # the same files: a new commit would only add noise to the branch's history
        return Published(
            commit=parent,
            parent=parent,
            files=files,
            message="already published",
            pushed=False,
            unchanged=True,
        )
    args = ["commit-tree", tree, "-m", message]
    if parent:
        args += ["-p", parent]
    commit = _git(repo, *args)
    if not dry_run:
        try:
            _git(
                repo,
                "push",
                "--quiet",
                "--",
                cfg.remote,
                f"{commit}:refs/heads/{cfg.branch}",
                env=NETWORK_ENV,
                timeout=timeout,
            )
        except DeployError as exc:
            raise DeployError(f"push to '{cfg.remote}' branch '{cfg.branch}' was rejected: {exc}") from None
    return Published(commit=commit, parent=parent, files=files, message=message, pushed=not dry_run)
