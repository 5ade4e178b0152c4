"""Lighthouse scores (mobile preset, the system Chromium) for the app and one model page.

    python bench/lighthouse.py [dist]

Serves `dist` (default dist/) on 127.0.0.1 as GitHub Pages would (misses get 404.html) and runs
the npm `lighthouse` CLI from ~/.cache/mnist-webgpu-node; install it there once with
`npm install --prefix ~/.cache/mnist-webgpu-node lighthouse@12` (LIGHTHOUSE=path overrides).
Prints one JSON object: per page, the four category scores (0-100).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src")]

from mnist_webgpu.core.layout import site_models  # noqa: E402
from mnist_webgpu.publish import serve  # noqa: E402

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-webgpu-node"
LIGHTHOUSE = Path(os.environ.get("LIGHTHOUSE") or CACHE / "node_modules" / ".bin" / "lighthouse")
CHROME = os.environ.get("CHROME_PATH", "/usr/bin/chromium")
CATEGORIES = ("performance", "accessibility", "best-practices", "seo")
FLAGS = "--headless=new --no-sandbox --disable-gpu --no-first-run --disable-background-networking"


def scores(url: str) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [
                str(LIGHTHOUSE),
                url,
                "--quiet",
                "--output=json",
                f"--output-path={report}",
                f"--only-categories={','.join(CATEGORIES)}",
                f"--chrome-flags={FLAGS}",
            ],
            check=True,
            env={**os.environ, "CHROME_PATH": CHROME},
        )
        result = json.loads(report.read_text())
    return {c: round(result["categories"][c]["score"] * 100) for c in CATEGORIES}


def run(dist: Path) -> dict:
    if not LIGHTHOUSE.exists():
        raise SystemExit(f"error: {LIGHTHOUSE}: no lighthouse; npm install --prefix {CACHE} lighthouse@12")
    server = serve.make_server(dist, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/"
    model = min(m.page for m in site_models(dist))
    try:
        return {page: scores(base + page) for page in ("index.html", model)}
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("dist")), indent=1))
