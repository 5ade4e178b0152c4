"""Ctrl-C during a stage, run by itself or by doit: SIGINT to the whole process group, as a
terminal sends it. One line, exit status 130, no traceback, nothing published."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kits.projectkit import FAST_CONFIG, clean_env, copy_project, run_stage, stage_command, stage_env

from mnist_webgpu.core import faults, interrupts

pytestmark = pytest.mark.slow  # real stages on trained models, real doit


def interrupt(cmd: list[str], cwd: Path, env: dict, reached, timeout: float = 600) -> tuple[int, str, str]:
    """Start `cmd` in a process group of its own, wait until `reached()`, SIGINT the group."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # a shell without job control starts background jobs with SIGINT ignored: undo that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + timeout
        while not reached():
            assert proc.poll() is None, f"{cmd} exited {proc.returncode} early: {proc.communicate()}"
            assert time.monotonic() < deadline, f"{cmd}: not reached in {timeout:.0f} s"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode, out, err


def assert_one_line(code: int, out: str, err: str) -> None:
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err, out + err
    assert err.strip().splitlines().count(interrupts.LINE) == 1, err
    assert code == interrupts.STATUS, (code, err)


@pytest.fixture
def project(exported, tmp_path) -> Path:
    root = tmp_path / "project"
    shutil.copytree(exported, root, symlinks=True)
    return root


@pytest.mark.parametrize(
    ("args", "point"),
    [
        (["train", "mlp"], "train:mlp"),
        (["compile", "mlp"], "compile:mlp"),
        (["site"], "site"),
        (["verify"], "verify"),
    ],
)
def test_ctrl_c_in_a_stage_is_one_line_and_130(project, args, point):
    if args == ["verify"]:
        assert run_stage(project, "site").returncode == 0
    marker = project / "reached"
    env = {**stage_env(project), faults.PAUSE_ENV: f"{point}={marker}"}
    code, out, err = interrupt(stage_command(*args), project, env, marker.exists)
    assert_one_line(code, out, err)
    assert err.strip().splitlines()[-1] == interrupts.LINE  # by itself: the stage says it, last
    assert not (project / "dist").exists()


def test_ctrl_c_while_doit_trains_is_one_line_and_130(project):
    copy_project(project)  # dodo.py and the code beside the trained models and their config
    marker = project / "reached"
    env = {**clean_env(), faults.PAUSE_ENV: f"train:mlp={marker}"}
    code, out, err = interrupt([sys.executable, "-m", "doit", "train:mlp"], project, env, marker.exists)
    assert_one_line(code, out, err)
    assert not (project / "dist").exists()


def test_ctrl_c_while_doit_waits_on_a_silent_mirror_is_one_line_and_130(tmp_path):
    """doit's worker processes (a task per core) and the data stage under it get the signal too."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    mirror = f"http://127.0.0.1:{listener.getsockname()[1]}/"
    text = (
        FAST_CONFIG.read_text()
        .replace("mirrors = []", f"mirrors = ['{mirror}']\npypi_fallback = false", 1)
        .replace("timeout_seconds = 5", "timeout_seconds = 300", 1)
    )
    root = copy_project(tmp_path / "project", text)
    code, out, err = interrupt(
        [sys.executable, "-m", "doit", "data"], root, clean_env(tmp_path / "cache"), lambda: accepted
    )
    listener.close()
    assert_one_line(code, out, err)
