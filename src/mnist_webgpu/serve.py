"""Serve dist/ on 127.0.0.1 for a local preview."""

from __future__ import annotations

import contextlib
import functools
import http.server
from pathlib import Path

from .errors import PipelineError


class Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".wasm": "application/wasm",
        ".safetensors": "application/octet-stream",
    }


def make_server(site: Path, port: int) -> http.server.ThreadingHTTPServer:
    site = Path(site)
    if not (site / "index.html").is_file():
        raise PipelineError(f"{site}: no index.html to serve; run `doit build` first")
    handler = functools.partial(Handler, directory=str(site))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise PipelineError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}") from None


def serve(site: Path, port: int) -> None:
    httpd = make_server(site, port)
    print(f"Serving {site} at http://127.0.0.1:{httpd.server_port}/ (Ctrl+C stops)", flush=True)
    with httpd, contextlib.suppress(KeyboardInterrupt):
        httpd.serve_forever()
