"""Render the static web app from the build's artefacts: `render(cfg, out_dir)`.

Reads, per model in config.toml:
  build/models/<name>/metrics.json, misclassified.json      (train stage)
  build/webgpu/<name>/manifest.json + the files it names      (compile stage)
plus the MNIST test images (for the misclassified digits), templates/ and site_src/.

Writes `out_dir` (the staging directory build/site/), replacing it as a whole:
  index.html, 404.html, models/<name>.html      pages (Jinja2, autoescaped)
  models/<name>/manifest.json + weight files   copied from build/webgpu/<name>/
  assets/<stem>.<hash>.<ext>                  site_src/ with content-hashed names (.wat assembled to .wasm)
  .nojekyll

Every URL in the output is relative, so the site works at / and under /<repo>/.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from markupsafe import Markup

from . import charts, export_paths, idx, sweep_report
from .config import Config
from .errors import PipelineError
from .paths import BUILD, SITE_STAGING
from .sweep import SweepError, load_results

PROJECT_DIR = Path(__file__).resolve().parents[2]
PAGES = ("index.html", "model.html", "404.html", "sweep.html")
HASH_CHARS = 10
ARCH_LABELS = {"mlp": "MLP", "cnn": "CNN"}


class SiteError(PipelineError):
    """A missing or malformed input of the site; the message names the file."""


@dataclass(frozen=True)
class Paths:
    """Where the site stage reads from (tests point these at temporary directories)."""

    build: Path
    templates: Path
    site_src: Path
    cache: Path

    def model_dir(self, name: str) -> Path:
        return self.build / "models" / name

    def webgpu_dir(self, name: str) -> Path:
        return self.build / "webgpu" / name

    def test_images(self) -> Path:
        return self.cache / "t10k-images-idx3-ubyte"

    def sweep_results(self) -> Path:
        """The committed sweep record, beside build/ in the project directory."""
        return self.build.parent / "sweeps" / "results.json"


def default_paths(cfg: Config) -> Paths:
    return Paths(
        build=BUILD,
        templates=PROJECT_DIR / "templates",
        site_src=PROJECT_DIR / "site_src",
        cache=cfg.cache_dir(),
    )


def staging_dir(cfg: Config) -> Path:
    return SITE_STAGING


# --- inputs, for doit ---------------------------------------------------------------------


def template_files(templates: Path) -> list[Path]:
    """The page templates and everything they extend, include or import, recursively."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)))
    seen: set[str] = set()
    todo = list(PAGES)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        source = (templates / name).read_text(encoding="utf-8")
        for ref in jinja2.meta.find_referenced_templates(env.parse(source)):
            if ref is None:
                raise SiteError(f"{templates / name}: a template name computed at run time cannot be tracked")
            todo.append(ref)
    return sorted(templates / n for n in seen)


def source_files(site_src: Path) -> list[Path]:
    """Every file of site_src/ that ships (hidden files and editor backups do not)."""
    if not site_src.is_dir():
        return []
    found = []
    for p in sorted(site_src.rglob("*")):
        rel = p.relative_to(site_src)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts) and not p.name.endswith("~"):
            found.append(p)
    return found


def assemble(path: Path) -> bytes:
    """A WebAssembly text file (.wat) as a validated binary module."""
    import wasmtime  # only the site stage needs it

    try:
        wasm = bytes(wasmtime.wat2wasm(path.read_text(encoding="utf-8")))
        wasmtime.Module.validate(wasmtime.Engine(), wasm)
    except (wasmtime.WasmtimeError, UnicodeDecodeError) as exc:
        text = str(exc).strip() or type(exc).__name__
        where = re.search(r"-->\s*\S*?:(\d+):(\d+)", text)  # wat2wasm's parse errors point at the text
        at = f" (line {where[1]}, column {where[2]})" if where else ""
        raise SiteError(f"{path}: not a valid WebAssembly module: {text.splitlines()[0]}{at}") from None
    return wasm


def runtime_files(site_src: Path) -> dict[str, bytes]:
    """What site_src/ ships, by path relative to it: each file as is, except WebAssembly text
    (x.wat), which ships assembled (x.wasm, the name the JS fetches)."""
    out: dict[str, bytes] = {}
    for p in source_files(site_src):
        rel = p.relative_to(site_src).as_posix()
        if rel.endswith(".wat"):
            rel, blob = rel.removesuffix(".wat") + ".wasm", assemble(p)
        else:
            blob = p.read_bytes()
        if rel in out:
            raise SiteError(f"{site_src / rel}: both the file and its .wat source are in {site_src}")
        out[rel] = blob
    return out


def write_runtime(site_src: Path, dest: Path) -> None:
    """site_src/ as it ships, under its own names (no hashes): for the test and bench pages."""
    for rel, blob in runtime_files(site_src).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(blob)


def input_files(cfg: Config, paths: Paths | None = None) -> list[Path]:
    """Everything `render` reads (for file_dep), known from the config alone so the list is
    the same before and after the first build (a changed list would make doit rerun)."""
    p = paths or default_paths(cfg)
    deps = [*template_files(p.templates), *source_files(p.site_src), p.test_images()]
    for name in cfg.model_names:
        deps += [p.model_dir(name) / "metrics.json", p.model_dir(name) / "misclassified.json"]
        deps += [p.webgpu_dir(name) / f.name for f in export_paths.outputs(cfg, name)]
    # committed, so normally present; a checkout without it gets no sweep page
    if p.sweep_results().is_file():
        deps.append(p.sweep_results())
    return deps


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


def git_commit(where: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else "unknown"


# --- assets with content-hashed names -----------------------------------------------------

_JS_SPEC = re.compile(r"""(?P<q>["'`])(?P<spec>\.{1,2}/[^"'`\s]+?)(?P=q)""")
_JS_IMPORT = re.compile(r"""(?:\bfrom|\bimport)\s*\(?\s*(?P<q>["'])(?P<spec>\.{1,2}/[^"']+)(?P=q)""")
_CSS_URL = re.compile(r"""url\(\s*(?P<q>["']?)(?P<spec>[^"')\s]+)(?P=q)\s*\)""")


def _pattern_for(path: str) -> re.Pattern | None:
    if path.endswith((".js", ".mjs")):
        return _JS_SPEC
    if path.endswith(".css"):
        return _CSS_URL
    return None


def _resolve(importer: str, spec: str, known: dict[str, bytes]) -> str | None:
    """The site_src-relative path a relative specifier names, if it is one of ours."""
    if "://" in spec or spec.startswith(("/", "data:", "#")):
        return None
    target = posixpath.normpath(posixpath.join(posixpath.dirname(importer), spec.split("?")[0].split("#")[0]))
    return target if target in known else None


def hashed_assets(site_src: Path) -> tuple[dict[str, str], dict[str, bytes]]:
    """site_src files -> (shipped path -> 'assets/<stem>.<hash>.<ext>', output path -> bytes).

    A file's hash covers its own bytes and those of every file it references, directly
    or not (import specifiers in JS, url() in CSS), so a changed module renames itself
    and everything that imports it: a redeploy never mixes old and new modules. The
    references are then rewritten to the hashed names.
    """
    raw = runtime_files(site_src)
    for path, blob in raw.items():
        if path.endswith((".js", ".mjs")):
            for m in _JS_IMPORT.finditer(blob.decode("utf-8")):
                if _resolve(path, m["spec"], raw) is None:
                    raise SiteError(f"{site_src / path}: imports {m['spec']}, which is not in {site_src}")
    refs: dict[str, set[str]] = {}
    for path, blob in raw.items():
        pattern = _pattern_for(path)
        text = blob.decode("utf-8") if pattern else ""
        found = pattern.finditer(text) if pattern else ()
        refs[path] = {t for m in found if (t := _resolve(path, m["spec"], raw))}

    def closure(path: str) -> set[str]:
        seen, todo = set(), [path]
        while todo:
            p = todo.pop()
            if p not in seen:
                seen.add(p)
                todo.extend(refs[p])
        return seen

    names: dict[str, str] = {}
    for path in raw:
        h = hashlib.sha256()
        for dep in sorted(closure(path)):
            h.update(dep.encode() + b"\0" + hashlib.sha256(raw[dep]).digest())
        stem, ext = posixpath.splitext(path)
        names[path] = f"assets/{stem}.{h.hexdigest()[:HASH_CHARS]}{ext}"

    out: dict[str, bytes] = {}
    for path, blob in raw.items():
        pattern = _pattern_for(path)
        if pattern:
            here = posixpath.dirname(names[path])

            def swap(m: re.Match, path=path, here=here) -> str:
                target = _resolve(path, m["spec"], raw)
                if target is None:
                    return m.group(0)
                new = posixpath.relpath(names[target], here)
                new = new if new.startswith("../") else "./" + new
                return m.group(0).replace(m["spec"], new, 1)

            blob = pattern.sub(swap, blob.decode("utf-8")).encode("utf-8")
        out[names[path]] = blob
    return names, out


def module_closure(entry: str, site_src: Path, names: dict[str, str]) -> list[str]:
    """The hashed names of the JS modules `entry` imports, directly or not (for modulepreload)."""
    raw = {p: (site_src / p).read_text(encoding="utf-8") for p in names if p.endswith(".js")}
    seen: list[str] = []
    todo = [entry]
    while todo:
        p = todo.pop(0)
        if p in seen or p not in raw:
            continue
        seen.append(p)
        specs = (_resolve(p, m["spec"], raw) for m in _JS_SPEC.finditer(raw[p]))
        todo += [t for t in specs if t and t.endswith(".js")]
    return [names[p] for p in seen[1:]]


# --- artefacts ----------------------------------------------------------------------------


def _read_json(path: Path, what: str, hint: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SiteError(f"{path}: missing {what} ({hint})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SiteError(f"{path}: unreadable {what}: {exc}") from None


def _require(obj: dict, keys: Iterable[str], path: Path) -> None:
    missing = [k for k in keys if k not in obj]
    if missing:
        raise SiteError(f"{path}: missing key(s) {', '.join(missing)}")


def _shipped_model_files(webgpu_dir: Path) -> list[str]:
    """The compile stage's output for one model: every plain file, hidden/temporary ones aside."""
    return sorted(
        p.relative_to(webgpu_dir).as_posix()
        for p in webgpu_dir.rglob("*")
        if p.is_file() and not any(s.startswith(".") for s in p.relative_to(webgpu_dir).parts)
    )


def _form_bytes(info: dict, wdir: Path) -> int:
    return int(info.get("bytes") or (wdir / info["file"]).stat().st_size)


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


def load_model(cfg: Config, p: Paths, name: str, test_images) -> dict[str, Any]:
    mdir, wdir = p.model_dir(name), p.webgpu_dir(name)
    metrics_path, mis_path, manifest_path = (
        mdir / "metrics.json",
        mdir / "misclassified.json",
        wdir / "manifest.json",
    )
    metrics = _read_json(metrics_path, "training metrics", f"run `doit train:{name}`")
    mis = _read_json(mis_path, "misclassified list", f"run `doit train:{name}`")
    manifest = _read_json(manifest_path, "WebGPU manifest", f"run `doit compile:{name}`")
    _require(
        metrics,
        ["test_accuracy", "val_accuracy", "per_class_accuracy", "confusion_matrix", "curves", "params"],
        metrics_path,
    )
    _require(mis, ["indices", "labels", "predictions"], mis_path)
    _require(manifest, ["forms", "default_form"], manifest_path)
    forms = {f.get("form"): f for f in manifest["forms"]}
    if manifest["default_form"] not in forms:
        raise SiteError(f"{manifest_path}: default_form {manifest['default_form']!r} is not one of its forms")
    for form, info in forms.items():
        f = str(info.get("file", ""))
        if not f or posixpath.isabs(f) or ".." in f.split("/") or not (wdir / f).is_file():
            raise SiteError(f"{manifest_path}: forms.{form}.file {f!r} is not a file beside the manifest")

    curves = metrics.get("curves") or {}
    steps = curves.get("step") or []
    model_cfg = metrics.get("config") or cfg.model(name).as_dict()
    shown = cfg.site.misclassified_shown
    digits = []
    rows = zip(mis["indices"], mis["labels"], mis["predictions"], strict=False)
    for index, label, pred in list(rows)[:shown]:
        if not 0 <= int(index) < len(test_images):
            raise SiteError(f"{mis_path}: test index {index} is outside the test set")
        digits.append(
            {
                "index": int(index),
                "label": int(label),
                "prediction": int(pred),
                "src": charts.png_data_uri(test_images[int(index)]),
            }
        )
    arch = manifest.get("arch") or model_cfg.get("arch") or cfg.model(name).arch
    default_form = manifest["default_form"]
    return {
        "name": name,
        "arch": arch,
        "arch_label": ARCH_LABELS.get(arch, arch.upper()),
        "metrics": metrics,
        "test_accuracy": float(metrics["test_accuracy"]),
        "val_accuracy": float(metrics["val_accuracy"]),
        "params": int(metrics["params"]),
        "train_seconds": metrics.get("train_seconds"),
        "steps": metrics.get("steps") or model_cfg.get("steps"),
        "steps_per_second": metrics.get("steps_per_second"),
        "device": metrics.get("device") or "unknown",
        "tinygrad_version": metrics.get("tinygrad_version") or "unknown",
        "created": str(metrics.get("created") or ""),
        "config_hash": str(metrics.get("config_hash") or ""),
        "default_form": default_form,
        "default_bytes": _form_bytes(forms[default_form], wdir),
        "forms": [
            {
                "name": form,
                "file": info["file"],
                "bytes": _form_bytes(info, wdir),
                "test_accuracy": info.get("test_accuracy"),
                "val_accuracy": info.get("validation_accuracy"),
                "default": form == default_form,
            }
            for form, info in forms.items()
        ],
        "kernels": len(manifest.get("kernels") or []),
        "hyperparameters": _flatten({k: v for k, v in model_cfg.items() if k != "name"}),
        "loss_svg": Markup(charts.line_chart(steps, curves.get("train_loss") or [], title="Training loss")),
        "acc_svg": Markup(
            charts.line_chart(
                steps,
                curves.get("val_accuracy") or [],
                title="Validation accuracy",
                percent=True,
                css_class="series-b",
            )
        ),
        "confusion_svg": Markup(charts.confusion_matrix(metrics["confusion_matrix"])),
        "per_class_svg": Markup(charts.class_accuracy(metrics["per_class_accuracy"])),
        "per_class": [float(a) for a in metrics["per_class_accuracy"]],
        "misclassified": digits,
        "misclassified_total": len(mis["indices"]),
        "manifest_url": f"models/{name}/manifest.json",
        "page": f"models/{name}.html",
        "webgpu_dir": wdir,
    }


def load_sweep(p: Paths) -> list[dict[str, Any]]:
    """The sweep report (per model: ranked trials and their scatter plot); [] before any sweep."""
    if not p.sweep_results().is_file():
        return []
    try:
        models = sweep_report.report(load_results(p.sweep_results()))
    except (SweepError, KeyError, TypeError) as exc:
        raise SiteError(f"{p.sweep_results()}: unusable sweep results ({exc}); rerun `doit sweep`") from None
    for m in models:
        done = [r for r in m["rows"] if r["state"] == "complete"]  # a pruned trial's time is partial
        points = [(r["train_seconds"], r["val_accuracy"], r["trial"]) for r in done]
        title = f"{m['model']}: validation accuracy vs training seconds"
        m["scatter_svg"] = Markup(charts.scatter(points, title=title, best=m["best"]["trial"]))
    return models


# --- rendering ----------------------------------------------------------------------------


def _percent(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{float(v) * 100:.{digits}f}%"


def _bytes(n: Any) -> str:
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}" if n < 100 else f"{n:.0f} {unit}"
        n /= 1000
    return f"{n} B"


def _duration(s: Any) -> str:
    if s is None:
        return "n/a"
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def _thousands(n: Any) -> str:
    return f"{int(n):,}".replace(",", "\u202f")


def _json_script(obj: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' can end the block."""
    text = json.dumps(obj, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _environment(templates: Path, assets: dict[str, str]) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )

    @jinja2.pass_context
    def url(ctx, path: str) -> str:
        return ctx["root"] + path

    @jinja2.pass_context
    def asset(ctx, name: str) -> str:
        if name not in assets:
            raise SiteError(f"a template asks for asset {name!r}, which site_src/ does not have")
        return ctx["root"] + assets[name]

    env.globals.update(url=url, asset=asset)
    env.filters.update(percent=_percent, bytes=_bytes, duration=_duration, thousands=_thousands)
    return env


def _replace_dir(staging: Path, out_dir: Path) -> None:
    old = out_dir.with_name(f".{out_dir.name}.old")
    if old.exists():
        shutil.rmtree(old)
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(staging, out_dir)
    if old.exists():
        shutil.rmtree(old)


def render(cfg: Config, out_dir: Path, paths: Paths | None = None) -> Path:
    """Build the whole site into `out_dir` (replaced at the end, never left half-written)."""
    p = paths or default_paths(cfg)
    out_dir = Path(out_dir)
    images = p.test_images()
    if not images.is_file():
        raise SiteError(f"{images}: missing MNIST test images (run `doit data`)")
    test_images = idx.read(images)
    models = [load_model(cfg, p, name, test_images) for name in cfg.model_names]
    default = cfg.default_model

    if not (p.site_src / "app.js").is_file():
        raise SiteError(f"{p.site_src}: no app.js")
    names, blobs = hashed_assets(p.site_src)
    preload = module_closure("app.js", p.site_src, names)
    commit = git_commit(cfg.base_dir)
    env = _environment(p.templates, names)
    sweep = load_sweep(p)
    common = {
        "sweep_page": "sweep.html" if sweep else "",
        "site": cfg.site,
        "models": models,
        "default_model": default,
        "commit": commit,
        "commit_short": commit[:10] if commit != "unknown" else commit,
        "repository_url": cfg.site.repository_url,
    }
    app_data = {
        "default": default,
        "models": [
            {
                "name": m["name"],
                "label": f"{m['arch_label']} · {m['name']}" if m["name"] != m["arch"] else m["arch_label"],
                "arch": m["arch"],
                "manifest": m["manifest_url"],
                "test_accuracy": m["test_accuracy"],
                "params": m["params"],
                "bytes": m["default_bytes"],
                "page": m["page"],
            }
            for m in models
        ],
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.with_name(f".{out_dir.name}.tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    for rel, blob in blobs.items():
        target = staging / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(blob)
    for m in models:
        for rel in _shipped_model_files(m["webgpu_dir"]):
            target = staging / "models" / m["name"] / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(m["webgpu_dir"] / rel, target)

    def page(template: str, target: str, root: str, **extra) -> None:
        html = env.get_template(template).render(root=root, **common, **extra)
        (staging / target).parent.mkdir(parents=True, exist_ok=True)
        (staging / target).write_text(html, encoding="utf-8")

    page("index.html", "index.html", "", page_id="app", app_data=_json_script(app_data), preload=preload)
    for m in models:
        page("model.html", m["page"], "../", page_id="model", model=m)
    page("404.html", "404.html", "", page_id="404")
    if sweep:
        page("sweep.html", "sweep.html", "", page_id="sweep", sweep=sweep)
        (staging / "HYPERPARAMETERS.md").write_text(sweep_report.markdown(sweep), encoding="utf-8")
    (staging / ".nojekyll").write_bytes(b"")
    _replace_dir(staging, out_dir)
    return out_dir
