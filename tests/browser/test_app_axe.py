"""axe-core on every page of the site, light and dark, the app empty and after drawing: no
violations. axe-core comes from npm (scripts/setup.sh --test installs it into a cache folder)
and is injected by the test: the site itself never loads it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from kits import appkit
from kits.appkit import SEVEN
from kits.browser_env import CHROMIUM

# every test here drives the whole app in Chromium: the full suite, not the fast tier
pytestmark = pytest.mark.slow

playwright = pytest.importorskip("playwright.sync_api")
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
AXE = Path(
    os.environ.get("MNIST_WEBGPU_AXE")
    or CACHE / "mnist-webgpu-node" / "node_modules" / "axe-core" / "axe.min.js"
)


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(f"{AXE}: no axe-core; run scripts/setup.sh --test (or set MNIST_WEBGPU_AXE)")
    return AXE.read_text()


@pytest.fixture(scope="module")
def base(tmp_path_factory, fast_config, mnist):
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    out = appkit.render_site(tmp_path_factory.mktemp("axe"), fast_config, mnist)
    with appkit.serve(out, not_found=out / "404.html") as url:
        yield url


def violations(s, axe_source: str) -> list[str]:
    # evaluated through the DevTools protocol, which the page's CSP does not govern
    s.page.evaluate(f"() => {{ {axe_source}\n}}")
    result = s.page.evaluate("async () => JSON.stringify((await axe.run(document)).violations)")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:4]}"
        for v in json.loads(result)
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize(
    "page", ["index.html", "drawn", "models/mlp.html", "models/cnn.html", "a/b/nope.html"]
)
def test_no_axe_violations(session, axe_source, scheme, page):
    s = session(color_scheme=scheme)
    if page == "a/b/nope.html":
        s.allow_console(r"status of 404")
        s.open(page)
        s.page.wait_for_selector("html[data-root]", state="attached")
    elif page == "drawn":
        s.open().ready()
        s.draw(SEVEN)
        s.wait_prediction()
    else:
        s.open(page)
        if page == "index.html":
            s.ready()
    found = violations(s, axe_source)
    assert not found, "\n".join(found)
