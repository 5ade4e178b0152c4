"""`python -m mnist_webgpu serve`: a real server on 127.0.0.1 serving dist/."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
