"""Offline and installable: a first visit caches the app shell and the default model (sw.js), a
second visit with the network cut loads and predicts, and a new deploy shows on the next visit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from kits import appkit, sitekit
from kits.appkit import SEVEN
from kits.browser_env import CHROMIUM

from mnist_webgpu.site import render as site

# every test here drives the whole app in Chromium: the full suite, not the fast tier
pytestmark = pytest.mark.slow

playwright = pytest.importorskip("playwright.sync_api")


@pytest.fixture(scope="module")
def deploy(tmp_path_factory, fast_config, mnist):
    """(render, out): render() builds the site again into out, as a new deploy would."""
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    tmp = tmp_path_factory.mktemp("offline")
    paths = sitekit.make_inputs(tmp, fast_config, mnist)
    out = tmp / "root" / "repo"

    def render():
        return site.render(fast_config, out, paths)

    render()
    return paths, render, out


@pytest.fixture(scope="module")
def base(deploy):
    _, _, out = deploy
    # serve the folder above, as Pages serves /<repo>/, so a new deploy can replace the folder
    with appkit.serve(out.parent) as url:
        yield url + "repo/"


def stylesheet(page) -> str:
    return page.evaluate("() => document.querySelector('link[rel=stylesheet]').getAttribute('href')")


def test_the_site_is_installable(deploy):
    _, _, out = deploy
    manifest = json.loads((out / "app.webmanifest").read_text())
    assert manifest["start_url"] == "./index.html" and manifest["display"] == "standalone"
    assert (out / manifest["icons"][0]["src"]).is_file()
    assert '<link rel="manifest" href="app.webmanifest">' in (out / "index.html").read_text()
    worker = (out / "sw.js").read_text()
    precache = json.loads(re.search(r"const PRECACHE = (\[.*?\]);", worker)[1])
    assert all((out / p).exists() for p in precache if p != "./"), precache
    assert "models/mlp/manifest.json" in precache and "models/cnn/manifest.json" not in precache


def test_second_visit_works_offline_and_a_new_deploy_shows_next_time(browser, base, deploy):
    paths, render, out = deploy
    s = appkit.Session(browser, base, route=False)
    try:
        s.open()
        s.ready()
        s.page.wait_for_selector('[data-testid="app"][data-offline="ready"]', state="attached", timeout=20000)
        first_css = stylesheet(s.page)

        s.context.set_offline(True)
        s.page.reload()
        s.ready()
        s.draw(SEVEN)
        s.wait_prediction()
        assert s.prediction() == "7", "offline, the cached default model predicts"

        # a new deploy: a changed stylesheet gets a new hashed name, the page a new reference
        css = paths.site_src / "style.css"
        css.write_text(css.read_text() + "\n/* a new deploy */\n")
        render()
        s.context.set_offline(False)
        s.page.reload()
        s.ready()
        new_css = stylesheet(s.page)
        assert new_css != first_css, "the page came from the old cache"
        assert (out / new_css).is_file()
        radius = s.page.evaluate("() => getComputedStyle(document.querySelector('.card')).borderRadius")
        assert radius == "16px", "the new stylesheet loaded"
        assert not s.console, s.console
    finally:
        s.close()
