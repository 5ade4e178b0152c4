"""One build at a time: the stages that write build/site, dist/ and the published branch
take build/build.lock. Real processes: two `doit build`s at once, and a held lock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kits.projectkit import MLP_ONLY, copy_project

from mnist_webgpu.core import config
from mnist_webgpu.pipeline import lock

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory, mnist_cache) -> tuple[Path, dict]:
    root = copy_project(tmp_path_factory.mktemp("concurrent"), MLP_ONLY)
    env = {**os.environ, config.CACHE_ENV: str(mnist_cache), "PYTHONPATH": str(root / "src")}
    env.pop(config.CONFIG_ENV, None)
    first = subprocess.run(
        [sys.executable, "-m", "doit", "build"], cwd=root, env=env, capture_output=True, text=True
    )
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    return root, env


def listing(root: Path) -> frozenset[str]:
    return frozenset(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_two_concurrent_builds_never_leave_dist_partial(project):
    root, env = project
    complete = listing(root / "dist")
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            try:
                now = listing(root / "dist")
            except FileNotFoundError:  # between the two renames of a swap, or a file moved mid-walk
                continue
            if now:
                seen.append(now)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for round_ in range(4):
            # a template change: both builds re-render the site and verify it into dist/
            page = root / "templates" / "base.html"  # not a child template: all of it renders
            page.write_text(page.read_text() + f"\n<!-- round {round_} -->\n")
            builds = [
                subprocess.Popen(
                    [sys.executable, "-m", "doit", "build"],
                    cwd=root,
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for _ in range(2)
            ]
            outs = [b.communicate(timeout=600) for b in builds]
            codes = [b.returncode for b in builds]
            assert codes == [0, 0], outs
            assert f"<!-- round {round_} -->" in (root / "dist" / "index.html").read_text()
            for stdout, stderr in outs:
                assert "Traceback" not in stdout + stderr
    finally:
        stop.set()
        watcher.join()
    partial = [s for s in seen if s != complete]
    assert seen and not partial, sorted(complete - partial[0]) if partial else "dist/ never seen"
    assert not [p for p in root.iterdir() if p.name.startswith(".dist.")]  # no staging left behind


def test_a_held_lock_makes_deploy_refuse_and_verify_wait(project):
    root, env = project
    stage = [sys.executable, "-m", "mnist_webgpu"]
    with lock.exclusive(root / "build", wait=False, what="test"):
        refused = subprocess.run(
            [*stage, "deploy", "--dry-run", "--allow-dirty"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 1
        assert refused.stderr.strip() == (
            f"error: another build is running (pid {os.getpid()}); deploy needs it done first: run again then"
        )
        waiting = subprocess.Popen(
            [*stage, "verify"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        time.sleep(3)
        assert waiting.poll() is None  # still waiting for the lock
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == 0, err
    assert f"another build is running (pid {os.getpid()}); verify waits for it" in err
