"""Where each stage's artefacts live, relative to the project directory doit runs in."""

from pathlib import Path

BUILD = Path("build")
MODELS = BUILD / "models"  # train:<model>: weights.safetensors, metrics.json, misclassified.json
WEBGPU = BUILD / "webgpu"  # compile:<model>: manifest.json and weight files
SITE_STAGING = BUILD / "site"  # site: the rendered site, before verify
DIST = Path("dist")  # verify: the verified site, ready to publish
SWEEP = BUILD / "sweep"  # sweep:<trial>: <model>/<trial>.json; sweep: results.json, HYPERPARAMETERS.md
SWEEP_RESULTS = SWEEP / "results.json"
SWEEP_REPORT = SWEEP / "HYPERPARAMETERS.md"
