"""What verify demands of every file the site ships: pages, styles, scripts, weight files.

    pages      a Content-Security-Policy no weaker than the one the templates set; no inline
               script or event handler; nothing fetched from another origin through any
               attribute (src, srcset, poster, object data, link hints, meta refresh, ...)
               or named by a URL member of a JSON data block (the app's models JSON)
    CSS        no url() or @import of another origin
    scripts    no absolute URL (fetch, import, WebSocket, ...) to another origin; what the
               service worker precaches
    web app manifest   its URL members (icons, start_url, scope)
    weights    a well-formed safetensors file whose every float is finite

Each problem is one line naming the file. Free of tinygrad.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

# --- Content-Security-Policy --------------------------------------------------------------

# every directive's sources must come from here: the page's own origin, nothing else
CSP_SOURCES = {"'self'", "'none'"}
CSP_EXTRA = {"script-src": {"'wasm-unsafe-eval'"}, "img-src": {"data:"}}  # WASM fallback, inline charts
# a script allowed by its digest runs only if it is exactly that script: no weakening by itself
CSP_HASH = re.compile(r"^'sha(256|384|512)-[A-Za-z0-9+/]+=*'$")
CSP_REQUIRED = {
    "default-src": {"'self'", "'none'"},
    "object-src": {"'none'"},
    "base-uri": {"'none'", "'self'"},
}


def csp_problems(policy: str) -> list[str]:
    """Why a policy is weaker than the site's own (an empty list when it is not)."""
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives.setdefault(words[0].lower(), [w for w in words[1:]])
    problems = []
    for name, allowed in CSP_REQUIRED.items():
        if name not in directives:
            problems.append(f"lacks {name}")
        elif not set(directives[name]) <= allowed or not directives[name]:
            problems.append(
                f"{name} is {' '.join(directives[name]) or 'empty'}, not {' or '.join(sorted(allowed))}"
            )
    for name, sources in directives.items():
        if name in CSP_REQUIRED:
            continue
        for source in sources:
            if name == "script-src" and CSP_HASH.match(source):
                continue
            if source.lower() not in CSP_SOURCES | CSP_EXTRA.get(name, set()):
                problems.append(f"{name} allows {source}")
    return problems


# --- URLs in pages, styles and scripts --------------------------------------------------------

# link relations the browser acts on by itself (fetching, connecting, resolving): never foreign
FETCHING_RELS = {
    "stylesheet", "icon", "apple-touch-icon", "mask-icon", "manifest", "modulepreload",
    "preload", "prefetch", "prerender", "dns-prefetch", "preconnect", "import",
}  # fmt: skip
# attributes that may name another site because a person has to follow them
NAVIGATION = {
    ("a", "href"),
    ("area", "href"),
    ("form", "action"),
    ("button", "formaction"),
    ("input", "formaction"),
}
# attributes the browser fetches from (any tag): they must stay on the site
FETCHED = {
    "src",
    "poster",
    "data",
    "background",
    "manifest",
    "href",
    "xlink:href",
    "ping",
    "codebase",
    "action",
}
INERT_SCRIPT_TYPES = {"application/json", "application/ld+json"}
ABSOLUTE = re.compile(r"^\s*(?:[a-zA-Z][a-zA-Z0-9+.-]*:)?//")
CSS_IMPORT = re.compile(r"""@import\s+(?:url\(\s*)?(?P<q>["']?)(?P<spec>[^"')\s;]+)(?P=q)""", re.I)
# a string literal holding an absolute URL: fetch("https://..."), new WebSocket("wss://..."), import("//...")
JS_ABSOLUTE = re.compile(r"""(?P<q>["'`])(?P<spec>(?:https?:|wss?:)?//[^"'`\s]+)(?P=q)""", re.I)
# names, not addresses: XML namespaces the DOM APIs take as strings
NAMESPACES = ("http://www.w3.org/",)


def foreign(url: str) -> bool:
    """Whether fetching `url` would reach another origin (data: and relative URLs are ours)."""
    parts = urlsplit(url.strip())
    return bool(parts.netloc) or (bool(parts.scheme) and parts.scheme.lower() not in ("data",))


def srcset_urls(value: str) -> list[str]:
    return [candidate.split()[0] for candidate in value.split(",") if candidate.split()]


def refresh_url(content: str) -> str | None:
    """The target of <meta http-equiv=refresh content="5; url=...">, if it names one."""
    match = re.search(r"url\s*=\s*['\"]?([^'\"]+)", content, re.I)
    return match.group(1).strip() if match else None


@dataclass
class Page:
    """What one HTML page loads, links to and allows, as the browser would see it."""

    fetched: list[str] = field(default_factory=list)  # loaded by the browser itself: must be ours
    links: list[str] = field(default_factory=list)  # followed by a person: ours must exist
    problems: list[str] = field(default_factory=list)
    policies: list[str] = field(default_factory=list)  # CSP meta contents
    css: list[str] = field(default_factory=list)  # <style> blocks and style="" attributes
    inline_scripts: list[str] = field(default_factory=list)  # the text of each executable inline <script>
    data: dict[str, str] = field(default_factory=dict)  # id -> text of each <script type=application/json>

    def script_hashes(self) -> set[str]:
        """The script-src hash sources of this page's policies ('sha256-...')."""
        found = set()
        for policy in self.policies:
            for part in policy.split(";"):
                words = part.split()
                if words and words[0].lower() == "script-src":
                    found |= {w for w in words[1:] if CSP_HASH.match(w)}
        return found

    def unallowed_scripts(self) -> list[str]:
        """Inline scripts no hash in the page's CSP allows (the browser would not run them)."""
        allowed = self.script_hashes()
        return [text for text in self.inline_scripts if csp_hash(text) not in allowed]


def csp_hash(script: str) -> str:
    """The CSP source that allows exactly this inline script."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


class _PageParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._script: list[str] | None = None  # the text of the inline script being read
        self._data_id: str | None = None  # that script's id when it is a JSON data block
        self._style = False

    def handle_starttag(self, tag, attrs):
        page = self.page
        values = {name.lower(): (value or "") for name, value in attrs}
        rel = set(values.get("rel", "").lower().split())
        for name, value in attrs:
            name = name.lower()
            if value is None or name.startswith("xmlns"):
                continue
            if name.startswith("on"):
                page.problems.append(f"<{tag}> has an inline event handler {name}=")
            elif name == "style":
                page.css.append(value)
            elif name in ("srcset", "imagesrcset"):
                page.fetched += srcset_urls(value)
            elif (tag, name) in NAVIGATION or (tag == "link" and name == "href" and not rel & FETCHING_RELS):
                page.links.append(value)
            elif name in FETCHED:
                page.fetched.append(value)
            elif ABSOLUTE.match(value) and tag != "meta":
                page.problems.append(f"<{tag} {name}> names {value.strip()} on another site")
        if tag == "meta":
            equiv = values.get("http-equiv", "").lower()
            if equiv == "content-security-policy":
                page.policies.append(values.get("content", ""))
            elif equiv == "refresh" and (target := refresh_url(values.get("content", ""))):
                if foreign(target):
                    page.problems.append(f"<meta http-equiv=refresh> sends the reader to {target}")
                else:
                    page.links.append(target)
            elif ABSOLUTE.match(values.get("content", "")):
                page.problems.append(f"<meta> names {values['content'].strip()} on another site")
        inert = values.get("type", "").lower() in INERT_SCRIPT_TYPES
        if tag == "script" and "src" not in values:
            self._script = []  # judged against the page's CSP hashes once the page is read
            self._data_id = values.get("id", "") if inert else None
        if tag == "style":
            self._style = True
        if tag == "base":
            page.problems.append("has a <base> element (it would move every relative URL)")

    def handle_endtag(self, tag):
        if tag == "style":
            self._style = False
        if tag == "script" and self._script is not None:
            if self._data_id is None:
                self.page.inline_scripts.append("".join(self._script))
            else:
                self.page.data[self._data_id] = "".join(self._script)
            self._script = None

    def handle_data(self, data):
        if self._style:
            self.page.css.append(data)
        if self._script is not None:
            self._script.append(data)


def scan_page(text: str) -> Page:
    parser = _PageParser()
    parser.feed(text)
    parser.close()
    page = parser.page
    for script in page.unallowed_scripts():
        first = (script.strip().splitlines() or [""])[0][:60]
        page.problems.append(
            f"has an inline <script> no hash in its CSP allows ({first!r}...; its hash is {csp_hash(script)})"
        )
    return page


def css_urls(text: str) -> list[str]:
    from mnist_webgpu.site.assets import CSS_URL

    return [m["spec"] for m in CSS_URL.finditer(text)] + [m["spec"] for m in CSS_IMPORT.finditer(text)]


def js_foreign_urls(text: str) -> list[str]:
    return [m["spec"] for m in JS_ABSOLUTE.finditer(text) if not m["spec"].startswith(NAMESPACES)]


# JSON members that name a file the browser or the app loads: the web app manifest's (W3C:
# icons[].src, start_url, scope, shortcuts[].url) and those of the app's data blocks (the
# models JSON's manifest and page, 404.html's style and icon); other strings are inert text
JSON_URL_KEYS = {"src", "start_url", "scope", "url", "manifest", "page", "style", "icon"}
# the service worker's list (templates/sw.js), rendered as one JSON array
PRECACHE = re.compile(r"^const PRECACHE = (?P<list>\[.*\]);$", re.M)


def json_urls(value, where: str = "") -> list[tuple[str, str]]:
    """(where, URL) for every string under a JSON_URL_KEYS member of `value`, at any depth."""
    found = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        at = f"{where}.{key}" if isinstance(key, str) else f"{where}[{key}]"
        if isinstance(item, str) and key in JSON_URL_KEYS:
            found.append((at.lstrip("."), item))
        else:
            found += json_urls(item, at)
    return found


def precached(text: str) -> list[tuple[str, str]] | None:
    """(where, URL) of what a service worker script precaches (None: it is no such script)."""
    match = PRECACHE.search(text)
    if match is None:
        return None
    try:
        urls = json.loads(match["list"])
    except ValueError:
        return [("PRECACHE", match["list"][:60])]  # reported as a URL that does not exist
    return [(f"PRECACHE[{i}]", u if isinstance(u, str) else json.dumps(u)) for i, u in enumerate(urls)]


def read_text(path: Path, rel: str) -> tuple[str | None, str | None]:
    """(text, None), or (None, the one-line problem) for a file that is not UTF-8."""
    try:
        return path.read_bytes().decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"{rel}: not UTF-8 text (byte {exc.start})"
    except OSError as exc:
        return None, f"{rel}: unreadable ({exc.strerror})"


# --- weight files ---------------------------------------------------------------------------

DTYPES = {"F32": np.float32, "F16": np.float16, "I8": np.int8}
MAX_HEADER = 16 * 1024 * 1024  # as the browser's parser (site_src/safetensors.js)


class WeightFileError(Exception):
    """A weight file is malformed; the message says how, in a few words."""


def read_safetensors(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, name -> array) of a safetensors file, checked as the browser checks it."""
    blob = path.read_bytes()
    if len(blob) < 8:
        raise WeightFileError(f"{len(blob)} bytes is too short for a safetensors file")
    (length,) = struct.unpack("<Q", blob[:8])
    if length > MAX_HEADER or 8 + length > len(blob):
        raise WeightFileError(f"header length {length} runs past the end of the {len(blob)}-byte file")
    try:
        header = json.loads(blob[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WeightFileError(f"header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise WeightFileError(f"header is a JSON {type(header).__name__}, not an object")
    data = memoryview(blob)[8 + length :]
    tensors, spans = {}, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            raise WeightFileError(f"tensor {name}: entry is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPES:
            raise WeightFileError(f"tensor {name}: unsupported dtype {dtype!r}")
        counts = isinstance(shape, list) and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        )
        if not counts:
            raise WeightFileError(f"tensor {name}: shape {shape!r} is not a list of counts")
        pair = isinstance(offsets, list) and len(offsets) == 2
        if not pair or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets):
            raise WeightFileError(f"tensor {name}: data_offsets {offsets!r} is not a pair of byte offsets")
        start, end = offsets
        if not 0 <= start <= end <= len(data):
            raise WeightFileError(f"tensor {name} offsets {start}..{end} outside the {len(data)}-byte data")
        itemsize = np.dtype(DTYPES[dtype]).itemsize
        if end - start != int(np.prod(shape, dtype=np.int64)) * itemsize:
            raise WeightFileError(f"tensor {name}: {end - start} bytes for shape {shape} of {dtype}")
        spans.append((start, end, name))
        tensors[name] = np.frombuffer(data[start:end], dtype=DTYPES[dtype]).reshape(shape)
    spans.sort()
    for (_, end, before), (start, _, name) in zip(spans, spans[1:], strict=False):
        if start < end:
            raise WeightFileError(f"tensor {name} overlaps {before}")
    return header, tensors


def weight_problems(
    tensors: dict[str, np.ndarray], expected: dict[str, list[int]], scale_suffix: str
) -> list[str]:
    """Every expected weight present with its shape and finite, as the browser expands it."""
    problems = []
    for name, shape in expected.items():
        t = tensors.get(name)
        if t is None:
            problems.append(f"no tensor {name}")
            continue
        if list(t.shape) != list(shape):
            problems.append(f"{name} has shape {list(t.shape)}, the manifest says {list(shape)}")
            continue
        values = t
        if t.dtype == np.int8:
            scale = tensors.get(name + scale_suffix)
            if scale is None or scale.dtype != np.float32 or scale.shape != (t.shape[0],):
                problems.append(
                    f"{name} is int8 without a float32 {name}{scale_suffix} of shape [{t.shape[0]}]"
                )
                continue
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is what is looked for
                values = t.reshape(t.shape[0], -1).astype(np.float32) * scale[:, None]
        elif t.dtype == np.float16:
            values = t.astype(np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            bad = ~np.isfinite(values)
        if bad.any():
            problems.append(f"{name} holds {int(bad.sum())} non-finite value(s) (NaN or Inf)")
    return problems
