"""Serve dist/ on 127.0.0.1 for a local preview, answering as GitHub Pages does: a miss at
any depth (or a folder without index.html) gets 404.html with status 404, nothing outside
dist/ is ever served (a symlink pointing out of it is a miss), and no folder is listed."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
import time
import urllib.parse
from pathlib import Path

from mnist_webgpu.core.errors import PipelineError


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".safetensors": "application/octet-stream",
        ".webmanifest": "application/manifest+json",
    }

    def send_head(self):
        if "\x00" in urllib.parse.unquote(self.path):  # no file has one: the path checks would raise
            self.send_error(400, "NUL byte in the path")
            return None
        root = Path(self.directory).resolve()
        target = Path(self.translate_path(self.path))
        if target.is_dir():
            if not self.path.split("?", 1)[0].endswith("/"):
                return super().send_head()  # the redirect to "folder/"
            target = target / "index.html"
        real = Path(os.path.realpath(target))
        if not real.is_file() or not real.is_relative_to(root):
            return self._not_found(root)
        return super().send_head()

    def list_directory(self, path):
        return self._not_found(Path(self.directory).resolve())

    def _not_found(self, root: Path):
        page = root / "404.html"
        body = page.read_bytes() if page.is_file() else b"<!doctype html><title>404</title>Not found\n"
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        return None


def make_server(site: Path, port: int) -> http.server.ThreadingHTTPServer:
    site = Path(site)
    if not (site / "index.html").is_file():
        raise PipelineError(f"{site}: no index.html to serve; run `doit build` first")
    handler = functools.partial(Handler, directory=str(site))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise PipelineError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None


def stop_with_parent(httpd: http.server.HTTPServer, every: float = 0.5) -> None:
    """Shut the server down once the process that started it (doit) is gone: a killed doit
    must not leave the port taken by an orphan."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every)
        httpd.shutdown()

    threading.Thread(target=watch, daemon=True, name="stop-with-parent").start()


def serve(site: Path, port: int) -> None:
    httpd = make_server(site, port)
    print(f"Serving {site} at http://127.0.0.1:{httpd.server_port}/ (Ctrl+C stops)", flush=True)
    stop_with_parent(httpd)
    with httpd, contextlib.suppress(KeyboardInterrupt):
        httpd.serve_forever()
