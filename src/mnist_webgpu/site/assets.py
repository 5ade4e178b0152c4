"""The web app's files as they ship: site_src/ with every file under a content-hashed name,
references rewritten to match.

A file's hash covers its own bytes and those of everything it references, so a redeploy
never mixes old and new modules. One set of patterns finds what a JS or CSS file
references; verify checks the shipped site with the same ones.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from pathlib import Path

from mnist_webgpu.core.errors import SiteError
from mnist_webgpu.core.graph import reachable

HASH_CHARS = 10


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


def runtime_files(site_src: Path) -> dict[str, bytes]:
    """What site_src/ ships, by path relative to it, each file as it is (each model's CPU
    module is compiled by the compile stage and ships with its manifest, not from here)."""
    return {p.relative_to(site_src).as_posix(): p.read_bytes() for p in source_files(site_src)}


def write_runtime(site_src: Path, dest: Path) -> None:
    """site_src/ as it ships, under its own names (no hashes): for the test and bench pages."""
    for rel, blob in runtime_files(site_src).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(blob)


# any quoted relative path in JS (import specifiers, new URL(...), fetch(...)): rewritten to hashed names
_JS_SPEC = re.compile(r"""(?P<q>["'`])(?P<spec>\.{1,2}/[^"'`\s]+?)(?P=q)""")
# what a module imports: `import x from "s"`, `export {x} from "s"`, `import "s"`, `import("s")`
JS_IMPORT = re.compile(
    r"""(?:\bimport\s*(?:[\w*{}\s,]+\s*from\s*)?|\bexport\s*[\w*{}\s,]+\s*from\s*|\bimport\s*\(\s*)"""
    r"""(?P<q>["'])(?P<spec>[^"']+)(?P=q)"""
)
# what a module loads beside its imports: `new URL("s", import.meta.url)`
JS_URL = re.compile(r"""new\s+URL\(\s*(?P<q>["'])(?P<spec>[^"']+)(?P=q)\s*,\s*import\.meta\.url""")
CSS_URL = re.compile(r"""url\(\s*(?P<q>["']?)(?P<spec>[^"')\s]+)(?P=q)\s*\)""")


def js_references(text: str) -> list[str]:
    """Every specifier a JS module imports or loads relative to itself (verify checks each exists)."""
    return [m["spec"] for pattern in (JS_IMPORT, JS_URL) for m in pattern.finditer(text)]


def _pattern_for(path: str) -> re.Pattern | None:
    if path.endswith((".js", ".mjs")):
        return _JS_SPEC
    if path.endswith(".css"):
        return CSS_URL
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
            for spec in js_references(blob.decode("utf-8")):
                if spec.startswith(".") and _resolve(path, spec, raw) is None:
                    raise SiteError(f"{site_src / path}: imports {spec}, which is not in {site_src}")
    refs: dict[str, set[str]] = {}
    for path, blob in raw.items():
        pattern = _pattern_for(path)
        text = blob.decode("utf-8") if pattern else ""
        found = pattern.finditer(text) if pattern else ()
        refs[path] = {t for m in found if (t := _resolve(path, m["spec"], raw))}

    names: dict[str, str] = {}
    for path in raw:
        h = hashlib.sha256()
        for dep in sorted(reachable([path], refs.__getitem__)):
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

    def imports(p: str) -> list[str]:
        specs = (_resolve(p, m["spec"], raw) for m in _JS_SPEC.finditer(raw[p]))
        return [t for t in specs if t and t.endswith(".js")]

    return [names[p] for p in reachable([entry], imports)[1:]] if entry in raw else []
