"""Check a staged site is complete and honest, then swap it into dist/.

Nothing reaches dist/ (or the published branch) without passing here: every referenced
file exists, nothing is fetched from elsewhere, manifests and weight files agree, and each
model meets its configured accuracy gate.
"""

from __future__ import annotations

import html.parser
import json
import re
import shutil
import struct
from pathlib import Path
from urllib.parse import urlsplit

from .config import Config
from .errors import PipelineError

RESOURCE_ATTRS = {("script", "src"), ("link", "href"), ("img", "src"), ("source", "src"), ("iframe", "src")}
JS_SPECIFIERS = re.compile(
    r"""(?:\bimport\s*(?:[\w*{}\s,]+\s*from\s*)?|\bexport\s*[\w*{}\s,]+\s*from\s*|\bimport\s*\(\s*)["']([^"']+)["']"""
)
JS_URLS = re.compile(r"""new\s+URL\(\s*["']([^"']+)["']\s*,\s*import\.meta\.url""")
CSS_URLS = re.compile(r"""url\(\s*["']?([^"')]+)["']?\s*\)""")


class VerifyError(PipelineError):
    """The staged site is incomplete or inconsistent; dist/ was left as it was."""


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.resources: list[str] = []  # fetched by the browser: must be ours
        self.links: list[str] = []  # navigation: ours must exist, others may point anywhere

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if (tag, name) in RESOURCE_ATTRS and not (tag == "link" and _is_navigation(attrs)):
                self.resources.append(value)
            elif name == "href":
                self.links.append(value)


def _is_navigation(attrs) -> bool:
    rel = dict(attrs).get("rel") or ""
    return not ({"stylesheet", "icon", "modulepreload", "preload", "manifest"} & set(rel.split()))


def _external(url: str) -> bool:
    parts = urlsplit(url)
    return bool(parts.scheme or parts.netloc)


def _target(site: Path, page: Path, url: str) -> Path | None:
    """The file a relative URL on `page` points at (None for fragments and data: URLs)."""
    parts = urlsplit(url)
    if parts.scheme == "data" or not parts.path:
        return None
    target = (page.parent / parts.path).resolve()
    if parts.path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target


def check_references(site: Path) -> list[str]:
    problems = []
    site = site.resolve()
    for page in sorted(site.rglob("*")):
        rel = page.relative_to(site).as_posix()
        if page.suffix == ".html":
            parser = _Links()
            parser.feed(page.read_text(encoding="utf-8"))
            urls = [(u, True) for u in parser.resources] + [(u, False) for u in parser.links]
        elif page.suffix in (".js", ".mjs"):
            text = page.read_text(encoding="utf-8")
            urls = [(u, True) for u in JS_SPECIFIERS.findall(text) + JS_URLS.findall(text)]
        elif page.suffix == ".css":
            urls = [(u, True) for u in CSS_URLS.findall(page.read_text(encoding="utf-8"))]
        else:
            continue
        for url, fetched in urls:
            if _external(url) and urlsplit(url).scheme != "data":
                if fetched:
                    problems.append(f"{rel}: loads {url} from outside the site")
                continue
            if url.startswith("/"):
                problems.append(f"{rel}: absolute path {url} breaks when served under /<repository>/")
                continue
            target = _target(site, page, url)
            if target is None:
                continue
            if not target.is_relative_to(site):
                problems.append(f"{rel}: {url} points outside the site")
            elif not target.is_file():
                problems.append(f"{rel}: {url} does not exist")
    return problems


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file, with offsets checked against the file size."""
    blob = path.read_bytes()
    if len(blob) < 8:
        raise VerifyError(f"{path}: too short for a safetensors file")
    (length,) = struct.unpack("<Q", blob[:8])
    if 8 + length > len(blob):
        raise VerifyError(f"{path}: header length {length} runs past the end of the file")
    header = json.loads(blob[8 : 8 + length])
    data_size = len(blob) - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        if not 0 <= start <= end <= data_size:
            raise VerifyError(
                f"{path}: tensor {name} offsets {start}..{end} outside the {data_size}-byte data"
            )
    return header


def check_models(cfg: Config, site: Path, models_dir: Path) -> list[str]:
    problems = []
    for model in cfg.models:
        metrics_path = models_dir / model.name / "metrics.json"
        if not metrics_path.is_file():
            problems.append(f"{metrics_path}: missing; model {model.name} has no metrics")
            continue
        metrics = json.loads(metrics_path.read_text())
        accuracy = metrics.get("test_accuracy")
        if not isinstance(accuracy, int | float):
            problems.append(f"{metrics_path}: no test_accuracy")
        elif accuracy < model.min_test_accuracy:
            problems.append(
                f"models.{model.name}.min_test_accuracy: test accuracy {accuracy:.4f} is below the gate "
                f"{model.min_test_accuracy:.4f}"
            )
        manifest_path = site / "models" / model.name / "manifest.json"
        if not manifest_path.is_file():
            problems.append(f"{manifest_path.relative_to(site)}: missing for model {model.name}")
            continue
        manifest = json.loads(manifest_path.read_text())
        problems += check_manifest(manifest_path, manifest)
    return problems


def check_manifest(path: Path, manifest: dict) -> list[str]:
    """The default weight form is present, its size is as recorded, and it holds every bound weight."""
    problems = []
    forms = {f.get("form"): f for f in manifest.get("forms", [])}
    default = manifest.get("default_form")
    if default not in forms:
        return [f"{path}: default_form {default!r} is not among the forms {sorted(forms)}"]
    weights = path.parent / forms[default]["file"]
    if not weights.is_file():
        return [f"{path}: weight file {forms[default]['file']} is missing"]
    if "bytes" in forms[default] and weights.stat().st_size != forms[default]["bytes"]:
        problems.append(f"{weights}: {weights.stat().st_size} bytes, manifest says {forms[default]['bytes']}")
    try:
        header = safetensors_header(weights)
    except (VerifyError, ValueError, KeyError) as exc:
        return [*problems, f"{weights}: unreadable safetensors ({exc})"]
    bound = {
        b["name"]
        for k in manifest.get("kernels", [])
        for b in k.get("bindings", [])
        if b.get("kind") == "weight"
    }
    missing = sorted(name for name in bound if name not in header)
    if missing:
        problems.append(f"{weights}: no tensor for weights {', '.join(missing)} bound by the kernels")
    return problems


def verify(cfg: Config, site: Path, models_dir: Path) -> None:
    required = ["index.html", "404.html", ".nojekyll"]
    problems = [f"{name}: missing" for name in required if not (site / name).is_file()]
    problems += check_references(site)
    problems += check_models(cfg, site, models_dir)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise VerifyError(f"site in {site} failed verification: {problems[0]}{more}")


def same_tree(a: Path, b: Path) -> bool:
    """Whether two directories hold the same files with the same bytes (dist/ is a copy of staging)."""

    def listing(root: Path) -> dict[str, Path]:
        return (
            {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
            if root.is_dir()
            else {}
        )

    left, right = listing(a), listing(b)
    return (
        bool(left)
        and left.keys() == right.keys()
        and all(left[k].read_bytes() == right[k].read_bytes() for k in left)
    )


def publish_to_dist(site: Path, dist: Path) -> None:
    """Replace dist/ by a copy of the verified site, never leaving a half-written dist/."""
    staging = dist.with_name(dist.name + ".new")
    old = dist.with_name(dist.name + ".old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    shutil.copytree(site, staging)
    if dist.exists():
        dist.rename(old)
    staging.rename(dist)
    shutil.rmtree(old, ignore_errors=True)
