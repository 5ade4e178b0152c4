"""Publish dist/ to a gh-pages branch with git plumbing.

Plain plumbing rather than ghp-import: the tree is built through a throwaway index and
pushed straight from a commit object, so the working tree, the index and every local
branch stay untouched, and each git failure becomes one clear line of ours.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .config import DeployConfig
from .errors import PipelineError


class DeployError(PipelineError):
    """Publishing refused or failed; nothing was pushed."""


@dataclass(frozen=True)
class Published:
    commit: str  # the gh-pages commit
    parent: str | None  # the remote branch head it replaced (None on the first deploy)
    files: tuple[str, ...]  # the paths in the published tree
    message: str
    pushed: bool


def _git(repo: Path, *args: str, env: dict | None = None, input: bytes | None = None) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=repo,
        env={**os.environ, **(env or {})},
        input=input,
        capture_output=True,
    )
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise DeployError(f"git {args[0]} failed: {detail[-1] if detail else f'exit {result.returncode}'}")
    return result.stdout.decode().rstrip("\n")


def source_commit(repo: Path) -> str:
    try:
        return _git(repo, "rev-parse", "HEAD")
    except DeployError:
        raise DeployError(f"{repo}: not a git repository with a commit to name as the source") from None


def dirty_paths(repo: Path) -> list[str]:
    status = _git(repo, "status", "--porcelain", "--untracked-files=normal")
    return [line[3:] for line in status.splitlines() if line]


def remote_head(repo: Path, remote: str, branch: str) -> str | None:
    """The remote branch's commit (None when the branch does not exist yet)."""
    try:
        out = _git(
            repo, "ls-remote", "--heads", remote, f"refs/heads/{branch}", env={"GIT_TERMINAL_PROMPT": "0"}
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
    repo: Path, site: Path, cfg: DeployConfig, *, dry_run: bool = False, allow_dirty: bool = False
) -> Published:
    """Commit `site` onto the remote's deploy branch and push it; refuse on a dirty tree."""
    repo, site = Path(repo), Path(site)
    if not (site / "index.html").is_file():
        raise DeployError(f"{site}: no index.html; run `doit build` first")
    source = source_commit(repo)
    dirty = dirty_paths(repo)
    if dirty and not allow_dirty:
        shown = ", ".join(dirty[:5]) + (" ..." if len(dirty) > 5 else "")
        raise DeployError(f"source tree has uncommitted changes ({shown}); commit them or pass --allow-dirty")
    parent = remote_head(repo, cfg.remote, cfg.branch)
    if parent:
        _git(repo, "fetch", "--quiet", "--no-tags", cfg.remote, parent, env={"GIT_TERMINAL_PROMPT": "0"})
    tree, files = build_tree(repo, site, cfg.cname)
    message = f"Publish site built from {source}" + (" (with uncommitted changes)" if dirty else "")
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
                cfg.remote,
                f"{commit}:refs/heads/{cfg.branch}",
                env={"GIT_TERMINAL_PROMPT": "0"},
            )
        except DeployError as exc:
            raise DeployError(f"push to '{cfg.remote}' branch '{cfg.branch}' was rejected: {exc}") from None
    return Published(commit=commit, parent=parent, files=files, message=message, pushed=not dry_run)
