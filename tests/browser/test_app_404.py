"""The 404 page at any depth, on servers that answer every miss with 404.html as GitHub Pages
does: the test kit's server at / and under /<repo>/, and `doit serve` (publish/serve.py)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from kits import appkit
from kits.browser_env import CHROMIUM

from mnist_webgpu.publish import serve as doit_serve

# every test here drives the whole app in Chromium: the full suite, not the fast tier
pytestmark = pytest.mark.slow

playwright = pytest.importorskip("playwright.sync_api")
MISS = r"status of 404"  # the page itself and the probes for the site's root are misses


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory, fast_config, mnist):
    if not Path(CHROMIUM).exists():
        pytest.skip("no Chromium at /usr/bin/chromium")
    return appkit.render_site(tmp_path_factory.mktemp("notfound"), fast_config, mnist, where="root/repo")


@pytest.fixture(scope="module")
def servers(site_dir):
    import threading

    pages = doit_serve.make_server(site_dir, 0)
    thread = threading.Thread(target=pages.serve_forever, daemon=True)
    thread.start()
    not_found = site_dir / "404.html"
    with (
        appkit.serve(site_dir, not_found=not_found) as at_root,
        appkit.serve(site_dir.parent, not_found=not_found) as above,
    ):
        yield {
            "root": at_root,
            "repo": above + "repo/",
            "doit serve": f"http://127.0.0.1:{pages.server_port}/",
        }
    pages.shutdown()
    pages.server_close()


@pytest.fixture(scope="module")
def base(servers):
    return servers["root"]


def test_the_inline_script_is_allowed_by_the_pages_own_csp(site_dir):
    html = (site_dir / "404.html").read_text()
    script = re.search(r"<script>(.*?)</script>", html, re.S)[1]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)[1]
    assert f"'sha256-{digest}'" in csp, f"templates/404.html: set the script's hash to sha256-{digest}"
    app = re.search(
        r'http-equiv="Content-Security-Policy" content="([^"]+)"', (site_dir / "index.html").read_text()
    )[1]
    same = csp.replace(f"'self' 'sha256-{digest}'", "'self' 'wasm-unsafe-eval'")
    assert same == app, "the 404 page's policy is the site's, its inline script aside"


@pytest.mark.parametrize(
    "server,path",
    [
        ("root", "404.html"),
        ("root", "nope.html"),
        ("root", "a/b/missing.html"),
        ("repo", "models/nope.html"),
        ("repo", "a/b/missing.html"),
        ("doit serve", "models/mlp/nope/deeper.html"),
    ],
)
def test_404_is_styled_and_its_links_work_at_any_depth(session, servers, server, path):
    base = servers[server]
    s = session(base=base).allow_console(MISS)
    response = s.page.goto(base + path)
    assert response.status == (200 if path == "404.html" else 404)
    s.page.wait_for_selector("html[data-root]", state="attached", timeout=10000)
    assert s.page.evaluate("() => document.documentElement.dataset.root") == base
    assert s.page.locator("h1").text_content() == "This page is not here"
    radius = s.page.evaluate("() => getComputedStyle(document.querySelector('.button')).borderRadius")
    assert radius == "10px", "the stylesheet loaded"
    hrefs = s.page.evaluate("() => Array.from(document.querySelectorAll('nav a'), (a) => a.href)")
    assert base + "models/mlp.html" in hrefs and base + "models/cnn.html" in hrefs
    s.el("back-to-app").click()
    s.ready()
    assert s.page.url == base + "index.html"


def get(url: str) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_doit_serve_answers_misses_like_pages_and_stays_inside_dist(tmp_path, servers, site_dir):
    base = servers["doit serve"]
    page = (site_dir / "404.html").read_bytes()
    assert get(base + "index.html")[0] == 200
    assert get(base)[0] == 200
    assert get(base + "x/y/z.html") == (404, page)
    assert get(base + "models/") == (404, page), "a folder without index.html is not listed"
    secret = tmp_path / "secret.txt"
    secret.write_text("outside dist")
    link = site_dir / "leak.txt"
    link.symlink_to(secret)
    try:
        assert get(base + "leak.txt") == (404, page), "a symlink out of dist/ was followed"
        assert get(base + "..%2f..%2fsecret.txt")[0] == 404
    finally:
        link.unlink()
