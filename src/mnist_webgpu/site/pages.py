"""The pages: Jinja templates (autoescaped, strict) with the site's filters and URL helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
from markupsafe import Markup

from mnist_webgpu.core.errors import SiteError
from mnist_webgpu.core.graph import reachable
from mnist_webgpu.core.progress import duration
from mnist_webgpu.train.verdict import DIGITS_DECLINED

PAGES = ("index.html", "model.html", "404.html", "sweep.html", "sw.js", "app.webmanifest")


def template_files(templates: Path) -> list[Path]:
    """The page templates and everything they extend, include or import, recursively."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)))

    def references(name: str) -> list[str]:
        source = (templates / name).read_text(encoding="utf-8")
        refs = list(jinja2.meta.find_referenced_templates(env.parse(source)))
        if None in refs:
            raise SiteError(f"{templates / name}: a template name computed at run time cannot be tracked")
        return refs

    return sorted(templates / n for n in reachable(PAGES, references))


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


def _thousands(n: Any) -> str:
    return f"{int(n):,}".replace(",", "\u202f")


def json_script(obj: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&' can end the block."""
    text = json.dumps(obj, separators=(",", ":"))
    return Markup(text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def environment(templates: Path, assets: dict[str, str]) -> jinja2.Environment:
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

    # the share of people's digits the decline rule may refuse, as the model pages state it
    env.globals.update(url=url, asset=asset, digits_declined=DIGITS_DECLINED)
    env.filters.update(percent=_percent, bytes=_bytes, duration=duration, thousands=_thousands)
    return env
