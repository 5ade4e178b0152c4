"""`python -m mnist_webgpu serve`: a real server on 127.0.0.1 serving dist/."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kits.projectkit import ROOT, copy_project, free_port


def test_serve_prints_the_url_and_serves_dist_with_module_mime_types(tmp_path):
    (tmp_path / "dist" / "assets").mkdir(parents=True)
    (tmp_path / "dist" / "index.html").write_text("<!doctype html><title>hi</title>")
    (tmp_path / "dist" / "assets" / "app.js").write_text("export {};\n")
    (tmp_path / "config.toml").write_text("[models.mlp]\narch = 'mlp'\n")
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "MNIST_WEBGPU_CONFIG": str(tmp_path / "config.toml"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_webgpu", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line
        for _ in range(50):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/assets/app.js", timeout=2) as r:
                    assert r.headers["Content-Type"].startswith("text/javascript")
                    break
            except OSError:
                time.sleep(0.1)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            assert b"<title>hi</title>" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_without_a_build_says_so(tmp_path):
    (tmp_path / "config.toml").write_text("[models.mlp]\narch = 'mlp'\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "MNIST_WEBGPU_CONFIG": str(tmp_path / "config.toml"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "mnist_webgpu", "serve", "--port", str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "error: dist: no index.html to serve; run `doit build` first"


def serve_through_doit(tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """`doit serve` in a copy of the project with a one-page dist/, in its own process group."""
    project = copy_project(tmp_path / "project", "[models.mlp]\narch = 'mlp'\n")
    (project / "dist").mkdir()
    (project / "dist" / "index.html").write_text("<!doctype html><title>hi</title>")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_WEBGPU_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "doit", "serve", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # as from a terminal: a shell without job control (a CI script's background job)
        # starts its children with SIGINT ignored, and Python keeps it so
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"doit serve never answered: {proc.stdout.read()}")


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_ctrl_c_stops_doit_serve_with_one_line(tmp_path):
    proc, port = serve_through_doit(tmp_path)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C in a terminal does: the whole group
    out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out and "KeyboardInterrupt" not in out, out
    assert "serve: stopped" in out
    assert not listening(port)


@pytest.mark.slow
def test_killing_doit_stops_the_server_it_started(tmp_path):
    proc, port = serve_through_doit(tmp_path)
    proc.kill()  # doit alone, SIGKILL: it cannot pass anything on to its child
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while listening(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not listening(port), "the server outlived doit and kept the port"


def start_serve(tmp_path: Path, port: int) -> tuple[subprocess.Popen, int]:
    """`python -m mnist_webgpu serve --port <port>` on a one-page dist/; the port it says it took."""
    (tmp_path / "dist").mkdir(exist_ok=True)
    (tmp_path / "dist" / "index.html").write_text("<!doctype html><title>hi</title>")
    (tmp_path / "config.toml").write_text("[models.mlp]\narch = 'mlp'\n[serve]\nport = 1\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "MNIST_WEBGPU_CONFIG": str(tmp_path / "config.toml"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mnist_webgpu", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert "http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, int(line.split("http://127.0.0.1:")[1].split("/")[0])


def test_port_0_binds_a_free_port_and_says_which(tmp_path):
    proc, port = start_serve(tmp_path, 0)
    try:
        assert port not in (0, 1)  # neither 0 nor the config's port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert b"<title>hi</title>" in r.read()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("path", ["/%00", "/index.html%00.png", "/a%00b/"])
def test_a_nul_byte_in_the_path_is_400_without_a_traceback(tmp_path, path):
    proc, port = start_serve(tmp_path, 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
            status = s.makefile("rb").readline()
        assert status.split()[1] == b"400", status
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:  # still serving
            assert r.status == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "Traceback" not in err and "ValueError" not in err, err
