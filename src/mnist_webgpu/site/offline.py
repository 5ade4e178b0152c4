"""What the service worker (templates/sw.js) caches on a first visit: the app shell and the
default model, and a version that changes whenever any of those bytes change."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from mnist_webgpu.core.layout import SiteModel


def precache(assets: dict[str, str], models: list[dict[str, Any]], default: str) -> list[str]:
    """Site-relative URLs: the app page, the web app manifest, every asset, the default model."""
    model = next(m for m in models if m["name"] == default)
    form = next(f for f in model["forms"] if f["default"])
    files = [model["manifest_url"], SiteModel(default).file(form["file"])]
    return ["./", "index.html", "app.webmanifest", *sorted(assets.values()), *files]


def version(urls: list[str], blobs: dict[str, bytes], model_dir: Path, default: str) -> str:
    """A hash of the precached assets' and default model's bytes (the pages change with them)."""
    h, shipped = hashlib.sha256(), SiteModel(default).file("")
    for url in urls:
        if url in blobs:
            h.update(url.encode() + b"\0" + hashlib.sha256(blobs[url]).digest())
        elif url.startswith(shipped):
            data = (model_dir / url.removeprefix(shipped)).read_bytes()
            h.update(url.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()[:16]
