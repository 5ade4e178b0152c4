"""Check a staged site is complete and honest, then swap it into dist/.

Nothing reaches dist/ (or the published branch) without passing here: every referenced
file exists, nothing is fetched from elsewhere, manifests and weight files agree, and each
model meets its configured accuracy gate.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlsplit

from mnist_webgpu.core import files, records
from mnist_webgpu.core.config import Config, training_settings
from mnist_webgpu.core.errors import PipelineError
from mnist_webgpu.core.layout import Layout, SiteModel
from mnist_webgpu.export import forms as forms_module
from mnist_webgpu.export import wasm
from mnist_webgpu.publish import checks
from mnist_webgpu.site.assets import js_references


class VerifyError(PipelineError):
    """The staged site is incomplete or inconsistent; dist/ was left as it was."""


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
    """Every page, style, script and web app manifest: what it loads is on the site and exists
    (attributes, JSON data blocks, the service worker's precache list); pages keep the CSP."""
    problems = []
    site = site.resolve()
    for page in sorted(site.rglob("*")):
        rel = page.relative_to(site).as_posix()
        if page.suffix not in (".html", ".svg", ".js", ".mjs", ".css", ".webmanifest") or not page.is_file():
            continue
        text, unreadable = checks.read_text(page, rel)
        if text is None:
            problems.append(unreadable)
            continue
        # (where in the file, or '', URL, whether the browser fetches it by itself)
        urls: list[tuple[str, str, bool]] = []
        if page.suffix in (".html", ".svg"):
            scanned = checks.scan_page(text)
            problems += [f"{rel}: {p}" for p in scanned.problems]
            if page.suffix == ".html":
                if not scanned.policies:
                    problems.append(
                        f"{rel}: no Content-Security-Policy <meta> (the site's pages all carry one)"
                    )
                for policy in scanned.policies:
                    problems += [
                        f"{rel}: Content-Security-Policy weakened: {p}" for p in checks.csp_problems(policy)
                    ]
            css = [u for block in scanned.css for u in checks.css_urls(block)]
            urls += [("", u, True) for u in scanned.fetched + css] + [("", u, False) for u in scanned.links]
            for block, data in scanned.data.items():
                parsed, bad = _json(data, f"{rel}: <script id={block}>")
                problems += bad
                urls += [(f"<script id={block}> {at}", u, True) for at, u in checks.json_urls(parsed)]
        elif page.suffix in (".js", ".mjs"):
            urls = [("", u, True) for u in js_references(text) + checks.js_foreign_urls(text)]
            urls += [(at, u, True) for at, u in checks.precached(text) or []]
        elif page.suffix == ".webmanifest":
            parsed, bad = _json(text, rel)
            problems += bad
            urls = [(at, u, True) for at, u in checks.json_urls(parsed)]
        else:
            urls = [("", u, True) for u in checks.css_urls(text)]
        for at, url, fetched in urls:
            where = f"{rel}: {at}: " if at else f"{rel}: "
            if checks.foreign(url):
                if fetched:
                    problems.append(f"{where}loads {url} from outside the site")
                continue
            if url.startswith("/"):
                problems.append(f"{where}absolute path {url} breaks when served under /<repository>/")
                continue
            target = _target(site, page, url)
            if target is None:
                continue
            if not target.is_relative_to(site):
                problems.append(f"{where}{url} points outside the site")
            elif not target.is_file():
                problems.append(f"{where}{url} does not exist")
    return problems


def _json(text: str, where: str) -> tuple[object, list[str]]:
    try:
        return json.loads(text), []
    except ValueError as exc:
        return None, [f"{where}: not JSON ({exc})"]


def app_models(site: Path) -> tuple[list[dict], list[str]]:
    """The models the app page offers (index.html's models JSON), and what is wrong with it."""
    index = site / "index.html"
    text, _ = checks.read_text(index, "index.html") if index.is_file() else (None, None)
    if text is None:
        return [], []  # missing or unreadable: reported as such
    block = checks.scan_page(text).data.get("models")
    if block is None:
        return [], ["index.html: no models JSON (<script type=application/json id=models>) for the app"]
    try:
        data = json.loads(block)
    except ValueError:
        return [], []  # check_references reports it
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list) or not all(isinstance(m, dict) for m in models):
        return [], ["index.html: <script id=models> models: expected a list of objects"]
    names = [m.get("name") for m in models]
    if data.get("default") not in names:
        return models, [
            f"index.html: <script id=models> default: {data.get('default')!r} is not among {names}"
        ]
    return models, []


def safetensors_header(path: Path) -> dict:
    """The JSON header of a safetensors file, every tensor checked against the file's bytes."""
    try:
        return checks.read_safetensors(path)[0]
    except checks.WeightFileError as exc:
        raise VerifyError(f"{path}: {exc}") from None


def check_models(cfg: Config, site: Path, build: Layout) -> list[str]:
    """Each model the app page loads is a model of the config, meets its gate, and ships exactly
    the weights and kernels its training and compile stages produced: the manifest names every
    file's digest, and the metrics were trained with the settings the config holds now."""
    entries, problems = app_models(site)
    loaded = {}
    for i, entry in enumerate(entries):
        if entry.get("name") not in cfg.model_names:
            problems.append(
                f"index.html: <script id=models> models[{i}].name: {entry.get('name')!r} is not a model "
                f"of {cfg.path} (known: {', '.join(cfg.model_names)})"
            )
        else:
            loaded[entry["name"]] = (i, entry.get("manifest"))
    for model in cfg.models:
        if (site / "index.html").is_file() and entries and model.name not in loaded:
            problems.append(f"index.html: <script id=models> models: no entry for models.{model.name}")
        i, url = loaded.get(model.name, (None, SiteModel(model.name).manifest))
        if not isinstance(url, str) or checks.foreign(url):
            problems.append(
                f"index.html: <script id=models> models[{i}].manifest: {url!r} is not on the site"
            )
            continue
        manifest_path = _target(site, site / "index.html", url)
        if manifest_path is None or not manifest_path.is_relative_to(site.resolve()):
            continue  # check_references names it
        try:
            metrics = records.read(records.Metrics, build.train_outputs(model.name).metrics)
            manifest = records.read(records.Manifest, manifest_path)
        except records.SchemaError as exc:
            problems.append(str(exc))
            continue
        if manifest.name != model.name:
            problems.append(
                f"{manifest_path}: name: {manifest.name!r}, but index.html loads it as model {model.name!r}"
            )
            continue
        outputs = build.train_outputs(model.name)
        if not metrics.trained_with(training_settings(cfg.train, model)):
            problems.append(
                f"{outputs.metrics}: trained with other settings than {cfg.path}'s models.{model.name} "
                f"(a stale model: run `doit train:{model.name}`)"
            )
        if not manifest.compiled_from(outputs.weights):
            problems.append(
                f"{manifest_path}: compiled from other weights than {outputs.weights} "
                f"(run `doit compile:{model.name}`)"
            )
        if metrics.test_accuracy < model.min_test_accuracy:
            problems.append(
                f"models.{model.name}.min_test_accuracy: test accuracy {metrics.test_accuracy:.4f} is below "
                f"the gate {model.min_test_accuracy:.4f}"
            )
        problems += check_manifest(manifest_path, manifest)
    return problems


def check_manifest(path: Path, manifest: records.Manifest) -> list[str]:
    """Every form file has its recorded size and digest; the default one holds every bound weight."""
    problems = []
    forms = {f.form: f for f in manifest.forms}
    if manifest.default_form not in forms:
        return [f"{path}: default_form {manifest.default_form!r} is not among the forms {sorted(forms)}"]
    problems += manifest.file_problems(path)
    problems += check_cpu_module(path, manifest)
    expected = {name: spec.shape for name, spec in manifest.weights.items()}
    bound = {str(b.name) for k in manifest.kernels for b in k.bindings if b.kind == "weight"}
    for form in manifest.forms:  # every form: the page may be asked for any of them
        weights = path.parent / form.file
        if not weights.is_file():
            continue
        try:
            header, tensors = checks.read_safetensors(weights)
        except checks.WeightFileError as exc:
            problems.append(f"{weights}: malformed safetensors ({exc})")
            continue
        problems += [
            f"{weights}: {p}" for p in checks.weight_problems(tensors, expected, forms_module.SCALE_SUFFIX)
        ]
        missing = sorted(name for name in bound if name not in header)
        if missing:
            problems.append(f"{weights}: no tensor for weights {', '.join(missing)} bound by the kernels")
    return problems


def check_cpu_module(path: Path, manifest: records.Manifest) -> list[str]:
    """The CPU module is a WebAssembly binary that imports nothing and exports what cpu.js calls,
    and the manifest places every buffer inside its arena."""
    module = path.parent / manifest.cpu.file
    if not module.is_file():
        return []  # file_problems names it
    problems = [f"{module}: {p}" for p in wasm.module_problems(module.read_bytes())]
    cpu = manifest.cpu
    for b in manifest.buffers:
        at = cpu.offsets.get(b.id)
        if at is None or at % wasm.ALIGN or at < 0 or at + b.bytes > cpu.arena_bytes:
            problems.append(f"{path}: cpu.offsets: buffer {b.id} has no 16-aligned place in the arena")
    return problems


def verify(cfg: Config, site: Path, build: Layout) -> None:
    required = ["index.html", "404.html", ".nojekyll", "sw.js"]  # app.js registers sw.js by name
    problems = [f"{name}: missing" for name in required if not (site / name).is_file()]
    problems += check_references(site)
    problems += check_models(cfg, site, build)
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

    try:
        left, right = listing(a), listing(b)
        return (
            bool(left)
            and left.keys() == right.keys()
            and all(left[k].read_bytes() == right[k].read_bytes() for k in left)
        )
    except OSError:  # another build swapping either tree right now: not up to date, run verify
        return False


def publish_to_dist(site: Path, dist: Path) -> None:
    """Replace dist/ by a copy of the verified site, never leaving a half-written dist/."""
    staging = files.staging_dir(dist)
    try:
        shutil.copytree(site, staging, dirs_exist_ok=True)
        files.replace_dir(staging, dist)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
