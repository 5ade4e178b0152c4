"""The web app's browser-test kit: a site rendered from fixture artefacts, a local server that
can be slowed, fail, and answer misses with 404.html as GitHub Pages does, and a recorded
Chromium page driven through the app's own hooks.

Used by tests/browser/test_app*.py (test modules do not import each other).
"""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import http.server
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from kits import sitekit
from kits.browser_env import CHROMIUM, CHROMIUM_ARGS, serving
from mnist_webgpu.site import render as site


def render_site(tmp: Path, cfg, mnist, where: str = "root/sub") -> Path:
    """The site of `cfg` (fixture artefacts, the test-only linear runtime) rendered at tmp/<where>."""
    paths = sitekit.make_inputs(tmp, cfg, mnist)
    return site.render(cfg, tmp / where, paths)


@dataclass
class Control:
    """What the server does to requests whose path (without the query) matches a glob."""

    delay: dict[str, float] = field(default_factory=dict)  # glob -> seconds before answering
    fail: set[str] = field(default_factory=set)  # globs answered with 503
    seen: list[str] = field(default_factory=list)

    def rule(self, path: str) -> tuple[float, bool]:
        wait = max((s for g, s in self.delay.items() if fnmatch.fnmatch(path, g)), default=0.0)
        return wait, any(fnmatch.fnmatch(path, g) for g in self.fail)


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".webmanifest": "application/manifest+json",
    }
    control: Control
    not_found: Path | None

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.control.seen.append(path)
        wait, fail = self.control.rule(path)
        if wait:
            time.sleep(wait)
        if fail:
            self.send_error(503, "failing on purpose (test)")
            return
        target = Path(self.translate_path(path))
        if self.not_found and not (target.is_file() or (target / "index.html").is_file()):
            body = self.not_found.read_bytes()
            self.send_response(404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()


@contextlib.contextmanager
def serve(directory: Path, control: Control | None = None, not_found: Path | None = None) -> Iterator[str]:
    """http://127.0.0.1:<free port>/ serving `directory`; misses answered with `not_found` (a
    file, with status 404) when given, as GitHub Pages answers them with the site's 404.html."""
    handler = functools.partial(
        type("Handler", (_Handler,), {"control": control or Control(), "not_found": not_found}),
        directory=str(directory),
    )
    with serving(handler) as url:
        yield url


def launch(pw):
    return pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


class Session:
    """One page with every request and console message recorded."""

    def __init__(self, browser, base: str, route: bool = True, **context_args):
        """route=False leaves requests alone (Playwright's routing and a cut network do not mix)."""
        self.base = base
        self.context = browser.new_context(**{"viewport": {"width": 1280, "height": 800}, **context_args})
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.console: list[str] = []
        self.allowed: list[str] = []
        if route:
            self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", self._on_console)
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    def _route(self, route):
        url = route.request.url
        self.requests.append(url)
        if url.startswith("http://127.0.0.1:"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def _on_console(self, msg):
        if msg.type in ("error", "warning"):
            self.console.append(f"{msg.type}: {msg.text}")

    def open(self, path: str = "index.html"):
        self.page.goto(self.base + path)
        return self

    def ready(self):
        self.page.wait_for_selector('[data-testid="app"][data-ready="true"]', timeout=20000)
        return self

    def el(self, testid: str):
        return self.page.get_by_test_id(testid)

    def canvas_box(self):
        c = self.el("canvas")
        c.scroll_into_view_if_needed()
        return c.bounding_box()

    def draw(self, points, steps: int = 8):
        box = self.canvas_box()
        xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
        m = self.page.mouse
        m.move(*xy[0])
        m.down()
        for p in xy[1:]:
            m.move(*p, steps=steps)
        m.up()

    def touch_draw(self, points, steps: int = 8):
        """Real touch input through the DevTools protocol (the context needs has_touch)."""
        box = self.canvas_box()
        cdp = self.context.new_cdp_session(self.page)
        xy = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
        cdp.send(
            "Input.dispatchTouchEvent",
            {"type": "touchStart", "touchPoints": [{"x": xy[0][0], "y": xy[0][1]}]},
        )
        for (x0, y0), (x1, y1) in zip(xy, xy[1:], strict=False):
            for i in range(1, steps + 1):
                t = i / steps
                point = {"x": x0 + (x1 - x0) * t, "y": y0 + (y1 - y0) * t}
                cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [point]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    def prediction(self) -> str:
        return self.el("prediction").text_content()

    def wait_prediction(self, present: bool = True):
        """Until the screen answers for the drawing as it is now: a digit, or none.

        Waits on selectors, never on a string predicate: those poll through eval, which the
        page's Content-Security-Policy forbids."""
        digit = ":not(:empty)" if present else ":empty"
        self.page.wait_for_selector(
            f'[data-testid="app"][data-settled="true"] [data-testid="prediction"]{digit}',
            state="attached",
            timeout=10000,
        )

    def probs(self) -> list[float]:
        return [float(self.el(f"prob-{d}").get_attribute("data-value")) for d in range(10)]

    def preview(self) -> np.ndarray:
        data = self.page.evaluate(
            """() => Array.from(document.querySelector('[data-testid=preview]').getContext('2d')
                     .getImageData(0, 0, 28, 28).data)"""
        )
        return np.array(data, dtype=np.float64).reshape(28, 28, 4)[:, :, 0] / 255

    def fake_runtime(self) -> dict:
        return self.page.evaluate("() => window.__fakeRuntime")

    def allow_console(self, *patterns: str):
        """Console errors a test provokes on purpose (a failing server), by regex."""
        self.allowed += patterns
        return self

    def check_clean(self):
        assert not self.blocked, f"requests left the site: {self.blocked}"
        assert all(u.startswith(self.base.rsplit("/", 1)[0]) for u in self.requests), self.requests
        unexpected = [c for c in self.console if not any(re.search(p, c) for p in self.allowed)]
        assert not unexpected, unexpected

    def close(self):
        self.context.close()


def sessions(browser, default_base: str):
    sessions: list[Session] = []

    def make(base: str | None = None, **context_args) -> Session:
        s = Session(browser, base or default_base, **context_args)
        sessions.append(s)
        return s

    yield make
    try:
        for s in sessions:
            s.check_clean()
    finally:
        for s in sessions:
            s.close()


SEVEN = [(0.3, 0.2), (0.7, 0.2), (0.45, 0.85)]
ONE = [(0.5, 0.1), (0.5, 0.9)]


# --- fixtures (registered in conftest): one Chromium per test module, a page per test ------


@pytest.fixture(scope="module")
def served(tmp_path_factory, fast_config, mnist):
    """The fixture site, served at a root and one folder down."""
    out = render_site(tmp_path_factory.mktemp("app"), fast_config, mnist)
    with serve(out) as base, serve(out.parent) as sub_root:
        yield {"base": base, "sub": sub_root + "sub/", "out": out}


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = launch(pw)
        yield b
        b.close()


@pytest.fixture
def session(browser, base):
    """A recorded page of the site at `base` (each test module says which site that is)."""
    yield from sessions(browser, base)
