"""Render the static web app from the build's artefacts: `render(cfg, out_dir)`.

Reads, per model in config.toml, its train and compile artefacts (inputs.py, through
their schemas), the MNIST test images (for the misclassified digits), templates/
(pages.py) and site_src/ (assets.py). Writes `out_dir` (the staging directory
build/site/), replacing it as a whole:

  index.html, 404.html, models/<name>.html      pages (Jinja2, autoescaped)
  models/<name>/manifest.json + weight files   the files the compile stage wrote
  assets/<stem>.<hash>.<ext>                  site_src/ with content-hashed names (.wat assembled to .wasm)
  sw.js, app.webmanifest                       the service worker (offline.py: what it caches) and
                                               the web app manifest, at the root for their scope
  .nojekyll

Every URL in the output is relative, so the site works at / and under /<repo>/.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from mnist_webgpu.core import faults, files
from mnist_webgpu.core.config import Config
from mnist_webgpu.core.errors import SiteError
from mnist_webgpu.data import idx
from mnist_webgpu.site import offline
from mnist_webgpu.site.assets import hashed_assets, module_closure, source_files, write_runtime
from mnist_webgpu.site.inputs import (
    ModelPage,
    Paths,
    default_paths,
    git_commit,
    input_files,
    load_model,
    load_sweep,
)
from mnist_webgpu.site.pages import environment, json_script, template_files
from mnist_webgpu.sweep import report as sweep_report

__all__ = [
    "Paths",
    "SiteError",
    "default_paths",
    "git_commit",
    "hashed_assets",
    "input_files",
    "render",
    "settings",
    "source_files",
    "template_files",
    "write_runtime",
]


def settings(cfg: Config) -> dict[str, Any]:
    """The part of the configuration the site shows (one dict: doit keeps one hash per task)."""
    s = cfg.site
    return {
        "site": {
            "title": s.title,
            "description": s.description,
            "default_model": cfg.default_model,
            "misclassified_shown": s.misclassified_shown,
            "repository_url": s.repository_url,
        },
        "models": list(cfg.model_names),
        "commit": git_commit(cfg.base_dir),
    }


def app_data(models: list[ModelPage], default: str) -> dict[str, Any]:
    """What the app page's script reads: the models to offer and where their manifests are."""
    return {
        "default": default,
        "models": [
            {
                "name": m.name,
                "label": f"{m.arch_label} · {m.name}" if m.name != m.arch else m.arch_label,
                "arch": m.arch,
                "manifest": m.urls.manifest,
                "test_accuracy": m.metrics.test_accuracy,
                "params": m.metrics.params,
                "bytes": m.default.bytes,
                "page": m.urls.page,
            }
            for m in models
        ],
    }


def render(cfg: Config, out_dir: Path, paths: Paths | None = None) -> Path:
    """Build the whole site into `out_dir` (replaced at the end, never left half-written)."""
    p = paths or default_paths(cfg)
    out_dir = Path(out_dir)
    images = p.test_images()
    if not images.is_file():
        raise SiteError(f"{images}: missing MNIST test images (run `doit data`)")
    test_images = idx.read(images)
    models = [load_model(cfg, p, name, test_images) for name in cfg.model_names]

    if not (p.site_src / "app.js").is_file():
        raise SiteError(f"{p.site_src}: no app.js")
    names, blobs = hashed_assets(p.site_src)
    preload = module_closure("app.js", p.site_src, names)
    commit = git_commit(cfg.base_dir)
    env = environment(p.templates, names)
    sweep = load_sweep(p)
    common = {
        "sweep_page": "sweep.html" if sweep else "",
        "site": cfg.site,
        "models": models,
        "default_model": cfg.default_model,
        "commit": commit,
        "commit_short": commit[:10] if commit != "unknown" else commit,
        "repository_url": cfg.site.repository_url,
    }

    staging = files.staging_dir(out_dir)
    try:
        for rel, blob in blobs.items():
            target = staging / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(blob)
        for m in models:
            (staging / m.urls.folder).mkdir(parents=True, exist_ok=True)
            for url, source in m.shipped().items():
                shutil.copyfile(source, staging / url)

        def page(template: str, target: str, root: str, **extra) -> None:
            html = env.get_template(template).render(root=root, **common, **extra)
            (staging / target).parent.mkdir(parents=True, exist_ok=True)
            (staging / target).write_text(html, encoding="utf-8")

        data = json_script(app_data(models, cfg.default_model))
        page("index.html", "index.html", "", page_id="app", app_data=data, preload=preload)
        for m in models:
            page("model.html", m.urls.page, "../", page_id="model", model=m)
        page("404.html", "404.html", "", page_id="404")
        default = next(m for m in models if m.name == cfg.default_model)
        shell = offline.precache(names, default)
        page("sw.js", "sw.js", "", precache=shell, version=offline.version(shell, blobs, default.shipped()))
        page("app.webmanifest", "app.webmanifest", "")
        if sweep:
            page("sweep.html", "sweep.html", "", page_id="sweep", sweep=sweep)
            (staging / "HYPERPARAMETERS.md").write_text(sweep_report.markdown(sweep), encoding="utf-8")
        (staging / ".nojekyll").write_bytes(b"")
        faults.pause("site")  # tests interrupt here: the whole site staged, not yet in place
        files.replace_dir(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
