"""Small MNIST-shaped files and a local HTTP server that can misbehave, for the data-source tests."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
import time

import numpy as np
import pytest

from mnist_webgpu.core import config
from mnist_webgpu.data import idx


def tiny_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 5, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 2, dtype=np.uint8),
    }


@pytest.fixture
def tiny():
    blobs = {name: idx.encode(a) for name, a in tiny_arrays().items()}
    expected = {name: (len(b), hashlib.sha256(b).hexdigest()) for name, b in blobs.items()}
    return blobs, expected


class Server:
    """Serves `routes[path] = (behaviour, body)`; records every request path."""

    def __init__(self):
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                behaviour, body = server.routes.get(self.path, ("404", b""))
                if behaviour.startswith("fail-then-good"):
                    failures = server.requests.count(self.path)
                    behaviour = "500" if failures <= int(behaviour.rsplit("-", 1)[1]) else "good"
                if behaviour in ("404", "500"):
                    self.send_error(int(behaviour))
                    return
                if behaviour == "hang":
                    time.sleep(3)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                if self.path.endswith("/"):
                    self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if behaviour == "truncated" else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def data_cfg(**overrides) -> config.DataConfig:
    settings = {"timeout_seconds": 0.5, "retries": 0, "backoff_seconds": 0.01, **overrides}
    return config.DataConfig(**settings)


def serve_all(server: Server, prefix: str, blobs: dict[str, bytes], behaviour: str = "good"):
    for name, blob in blobs.items():
        server.routes[f"{prefix}/{name}.gz"] = (behaviour, gzip.compress(blob))
