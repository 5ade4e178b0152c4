"""What the site weighs: dist/ in total, each model's weight forms, and what a first visit fetches.

    python bench/payload.py [dist]

The bytes before the first prediction are measured in the browser (bench/browser.py, the
app's own first prediction); this script counts the files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from mnist_webgpu.core.layout import site_models  # noqa: E402

TARGET_FIRST_PREDICTION_BYTES = 500_000  # issue 9: HTML, JS, CSS, manifest, default weights


def run(dist: Path = Path("dist")) -> dict:
    files = [p for p in dist.rglob("*") if p.is_file()]
    models = {}
    for model in site_models(dist):
        manifest_path = dist / model.manifest
        manifest = json.loads(manifest_path.read_text())
        here = manifest_path.parent
        models[model.name] = {
            "default_form": manifest["default_form"],
            "manifest_bytes": manifest_path.stat().st_size,
            "weights_bytes": {f["form"]: (here / f["file"]).stat().st_size for f in manifest["forms"]},
        }
    return {
        "dist_bytes": sum(p.stat().st_size for p in files),
        "dist_files": len(files),
        "assets_bytes": sum(p.stat().st_size for p in (dist / "assets").glob("*") if p.is_file()),
        "models": models,
        "target_bytes_before_first_prediction": TARGET_FIRST_PREDICTION_BYTES,
    }


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("dist")), indent=1))
