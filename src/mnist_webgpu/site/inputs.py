"""What the site stage reads: each model's training and compile artefacts (through their
schemas), the sweep results, the MNIST test images; and the list of those files for doit."""

from __future__ import annotations

import posixpath
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup

from mnist_webgpu.core import records
from mnist_webgpu.core.config import Config
from mnist_webgpu.core.errors import SiteError
from mnist_webgpu.core.layout import MANIFEST, PROJECT, Layout, SiteModel
from mnist_webgpu.data import mnist as data
from mnist_webgpu.site import charts
from mnist_webgpu.site.assets import source_files
from mnist_webgpu.site.pages import template_files
from mnist_webgpu.sweep import report as sweep_report

PROJECT_DIR = Path(__file__).resolve().parents[3]
TEST_IMAGES = "t10k-images-idx3-ubyte"


@dataclass(frozen=True)
class Paths:
    """Where the site stage reads from (tests point these at temporary directories)."""

    layout: Layout
    templates: Path
    site_src: Path
    cache: Path

    def test_images(self) -> Path:
        return data.paths(self.cache)[TEST_IMAGES]


def default_paths(cfg: Config) -> Paths:
    return Paths(
        layout=PROJECT,
        templates=PROJECT_DIR / "templates",
        site_src=PROJECT_DIR / "site_src",
        cache=cfg.cache_dir(),
    )


def input_files(cfg: Config, paths: Paths | None = None) -> list[Path]:
    """Everything `render` reads (for file_dep), known from the config alone so the list is
    the same before and after the first build (a changed list would make doit rerun)."""
    paths = paths or default_paths(cfg)
    lay = paths.layout
    deps = [*template_files(paths.templates), *source_files(paths.site_src), paths.test_images()]
    for name in cfg.model_names:
        outputs = lay.train_outputs(name)
        deps += [outputs.metrics, outputs.misclassified, *lay.compile_outputs(name, cfg.export.forms)]
    # the committed sweep record: a checkout without one gets no sweep page
    if lay.sweep_results.is_file():
        deps.append(lay.sweep_results)
    return deps


def git_commit(where: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else "unknown"


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += _flatten(v, key + ".")
        elif isinstance(v, list | tuple):
            rows.append((key, ", ".join(str(x) for x in v) or "none"))
        else:
            rows.append((key, str(v).lower() if isinstance(v, bool) else str(v)))
    return rows


def check_form_files(manifest: records.Manifest, manifest_path: Path) -> None:
    for form in manifest.forms:
        f = form.file
        if not f or posixpath.isabs(f) or ".." in f.split("/") or not (manifest_path.parent / f).is_file():
            raise SiteError(
                f"{manifest_path}: forms.{form.form}.file {f!r} is not a file beside the manifest"
            )
    if manifest.default_form not in {f.form for f in manifest.forms}:
        raise SiteError(f"{manifest_path}: default_form {manifest.default_form!r} is not one of its forms")
    f = manifest.cpu.file
    if not f or posixpath.isabs(f) or "/" in f or not (manifest_path.parent / f).is_file():
        raise SiteError(f"{manifest_path}: cpu.file {f!r} is not a file beside the manifest")


@dataclass(frozen=True)
class Mistake:
    index: int  # into the test set
    label: int
    prediction: int
    src: str  # the test image, a PNG data: URI


@dataclass(frozen=True)
class ModelPage:
    """One model as the pages show it: its records as read (templates read their fields), where
    the site puts it, and what the pages draw from the records."""

    name: str
    metrics: records.Metrics
    manifest: records.Manifest
    webgpu_dir: Path  # where its shipped files are copied from
    misclassified: list[Mistake]  # the first few, as the page shows them
    misclassified_total: int

    @property
    def urls(self) -> SiteModel:
        return SiteModel(self.name)

    @property
    def arch(self) -> str:
        return self.manifest.model.arch

    @property
    def arch_label(self) -> str:
        return self.manifest.model.label

    @property
    def default(self) -> records.Form:
        return self.manifest.form(self.manifest.default_form)

    def shipped(self) -> dict[str, Path]:
        """Site URL -> the file compile wrote: the manifest, each form's weights, the CPU module."""
        files = [MANIFEST, *(f.file for f in self.manifest.forms), self.manifest.cpu.file]
        return {self.urls.file(f): self.webgpu_dir / f for f in files}

    def download(self, form: records.Form) -> str:
        """A form's weight file as the model's page links it."""
        return self.urls.from_page(self.urls.file(form.file))

    @property
    def hyperparameters(self) -> list[tuple[str, str]]:
        return _flatten({k: v for k, v in self.metrics.config.items() if k != "name"})

    @property
    def loss_svg(self) -> Markup:
        curves = self.metrics.curves
        return Markup(charts.line_chart(curves.step, curves.train_loss, title="Training loss"))

    @property
    def acc_svg(self) -> Markup:
        curves = self.metrics.curves
        return Markup(
            charts.line_chart(
                curves.step,
                curves.val_accuracy,
                title="Validation accuracy",
                percent=True,
                css_class="series-b",
            )
        )

    @property
    def confusion_svg(self) -> Markup:
        return Markup(charts.confusion_matrix(self.metrics.confusion_matrix))

    @property
    def per_class_svg(self) -> Markup:
        return Markup(charts.class_accuracy(self.metrics.per_class_accuracy))


def load_model(cfg: Config, p: Paths, name: str, test_images) -> ModelPage:
    """One model's page data: its metrics, mistakes and manifest, read through their records."""
    outputs, manifest_path = p.layout.train_outputs(name), p.layout.manifest(name)
    metrics = records.read(records.Metrics, outputs.metrics, f"run `doit train:{name}`")
    mis = records.read(records.Misclassified, outputs.misclassified, f"run `doit train:{name}`")
    manifest = records.read(records.Manifest, manifest_path, f"run `doit compile:{name}`")
    check_form_files(manifest, manifest_path)

    digits = []
    rows = zip(mis.indices, mis.labels, mis.predictions, strict=True)
    for index, label, pred in list(rows)[: cfg.site.misclassified_shown]:
        if not 0 <= index < len(test_images):
            raise SiteError(f"{outputs.misclassified}: test index {index} is outside the test set")
        digits.append(Mistake(index, label, pred, charts.png_data_uri(test_images[index])))
    return ModelPage(name, metrics, manifest, p.layout.webgpu_dir(name), digits, len(mis.indices))


def load_sweep(p: Paths) -> list[dict[str, Any]]:
    """The sweep report (per model: ranked trials and their scatter plot); [] before any sweep."""
    results = p.layout.sweep_results
    if not results.is_file():
        return []
    rows = records.read(records.SweepResults, results, "run `doit sweep`").rows
    models = sweep_report.report([records.plain(r) for r in rows])
    for m in models:
        done = [r for r in m["rows"] if r["state"] == "complete"]  # a pruned trial's time is partial
        points = [(r["train_seconds"], r["val_accuracy"], r["trial"]) for r in done]
        title = f"{m['model']}: validation accuracy vs training seconds"
        m["scatter_svg"] = Markup(charts.scatter(points, title=title, best=m["best"]["trial"]))
    return models
