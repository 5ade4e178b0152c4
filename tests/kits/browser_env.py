"""Serving a runtime test site on 127.0.0.1 and launching the browsers installed here.

Shared by the tests (test_browser_parity, test_app, test_drawn_digits) and the bench scripts,
which import it as kits.browser_env.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from kits.projectkit import ROOT, free_port
from mnist_webgpu.core.layout import Layout, SiteModel
from mnist_webgpu.site.render import write_runtime

CHROMIUM = "/usr/bin/chromium"
# WebGPU on SwiftShader, headless, as root, on a closed network (see shared notes ENVIRONMENT.md)
CHROMIUM_ARGS = [
    "--enable-unsafe-webgpu",
    "--enable-features=Vulkan",
    "--use-vulkan=swiftshader",
    "--use-angle=swiftshader",
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


def stage_site(site: Path, project: Path, names: list[str], images: np.ndarray) -> None:
    """site/runtime (site_src as it ships), site/page (the harness page in tests/fixtures/harness),
    site/models/<name>, site/inputs.bin."""
    write_runtime(ROOT / "site_src", site / "runtime")
    shutil.copytree(ROOT / "tests" / "fixtures" / "harness", site / "page", dirs_exist_ok=True)
    for name in names:
        shutil.copytree(Layout(project).webgpu_dir(name), site / SiteModel(name).folder, dirs_exist_ok=True)
    (site / "inputs.bin").write_bytes((images.astype(np.float32) / 255).tobytes())


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    # .mjs and .wasm for ONNX Runtime Web in the bench: wasm streaming compilation needs its MIME type
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
    }

    def log_message(self, *args) -> None:
        pass


# what makes a page cross-origin isolated (every resource here is same-origin, so nothing breaks)
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
}


@contextlib.contextmanager
def serve(directory: Path, headers: dict[str, str] | None = None) -> Iterator[str]:
    """An http:// base URL serving `directory` from a thread, on a free port of 127.0.0.1,
    every response with `headers` added."""

    class Handler(_QuietHandler):
        def end_headers(self) -> None:
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            super().end_headers()

    with serving(functools.partial(Handler, directory=str(directory))) as url:
        yield url


@contextlib.contextmanager
def serving(handler) -> Iterator[str]:
    """http://127.0.0.1:<free port>/ answered by `handler` on a thread, for the block's duration."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def chromium_page(base_url: str):
    """A headless Chromium page on the harness, ready to call window.harness."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(base_url + "page/index.html")
            # a function, not an expression string: polling a string needs eval, which a CSP may forbid
            page.wait_for_function("() => window.harnessReady === true", timeout=30_000)
            page.errors = errors
            yield page
        finally:
            browser.close()


@contextlib.contextmanager
def firefox_session(profile: Path):
    """A Marionette client on a headless Firefox ESR with a fresh profile (no WebGPU adapter here)."""
    import subprocess

    from marionette_driver.marionette import Marionette

    port = free_port()
    profile.mkdir(parents=True, exist_ok=True)
    prefs = {
        "marionette.port": port,
        "browser.shell.checkDefaultBrowser": False,
        "datareporting.policy.dataSubmissionEnabled": False,
        "app.update.disabledForTesting": True,
        "network.captive-portal-service.enabled": False,
    }
    (profile / "user.js").write_text(
        "".join(
            f'user_pref("{k}", {str(v).lower() if isinstance(v, bool) else v});\n' for k, v in prefs.items()
        )
    )
    process = subprocess.Popen(
        ["firefox-esr", "--headless", "--marionette", "--no-remote", "--profile", str(profile)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = Marionette(host="127.0.0.1", port=port, startup_timeout=60)
        client.start_session()
        try:
            yield client
        finally:
            client.delete_session()
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
