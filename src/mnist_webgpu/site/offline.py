"""What the service worker (templates/sw.js) caches on a first visit: the app shell and the
default model, and a version that changes whenever any of those bytes change."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mnist_webgpu.site.inputs import ModelPage


def precache(assets: dict[str, str], default: ModelPage) -> list[str]:
    """Site-relative URLs: the app page, the web app manifest, every asset, the default model
    (its manifest, default weights and CPU module: offline, the page may have no GPU)."""
    files = [
        default.urls.manifest,
        default.urls.file(default.default.file),
        default.urls.file(default.manifest.cpu.file),
    ]
    return ["./", "index.html", "app.webmanifest", *sorted(assets.values()), *files]


def version(urls: list[str], blobs: dict[str, bytes], shipped: dict[str, Path]) -> str:
    """A hash of the precached assets' and default model's bytes (the pages change with them);
    `shipped` maps the default model's URLs to the files they are copied from."""
    h = hashlib.sha256()
    for url in urls:
        if url in blobs:
            h.update(url.encode() + b"\0" + hashlib.sha256(blobs[url]).digest())
        elif url in shipped:
            h.update(url.encode() + b"\0" + hashlib.sha256(shipped[url].read_bytes()).digest())
    return h.hexdigest()[:16]
