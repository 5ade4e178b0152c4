"""The model pages a newcomer reads: settings in words, every shipped weight file offered as a
download (no bytes in dist/ that no page links), "Try it" opens the app on this model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from kits import appkit

# every test here drives the whole app in Chromium: the full suite, not the fast tier
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def out(tmp_path_factory, fast_config, mnist) -> Path:
    return appkit.render_site(tmp_path_factory.mktemp("model-page"), fast_config, mnist)


def test_every_setting_is_explained_and_empty_values_say_what_they_mean(out):
    html = (out / "models" / "mlp.html").read_text()
    table = re.search(r'<table class="table table-kv" data-testid="settings">(.*?)</table>', html, re.S)[1]
    rows = re.findall(r'<th scope="row"><code>([^<]+)</code>(.*?)</th><td>(.*?)</td>', table)
    assert len(rows) >= 15
    unexplained = [key for key, meaning, _ in rows if "setting-meaning" not in meaning]
    assert not unexplained, f"settings without words: {unexplained}"
    values = {key: value for key, _, value in rows}
    assert values["train.train_limit"].startswith("all") or values["train.train_limit"] not in ("0", "")
    assert all(v.strip() for v in values.values()), "an empty cell"


def test_every_weight_file_shipped_is_a_download(out):
    for page in sorted((out / "models").glob("*.html")):
        name = page.stem
        html = page.read_text()
        linked = set(re.findall(rf'href="{name}/([^"]+)" download', html))
        manifest = json.loads((out / "models" / name / "manifest.json").read_text())
        shipped = {f["file"] for f in manifest["forms"]}  # the weights; cpu.wasm is the runtime's
        assert shipped <= {p.name for p in (out / "models" / name).iterdir()}
        assert shipped and linked == shipped, f"{page.name}: shipped {shipped}, linked {linked}"
        assert f'href="../index.html?model={name}"' in html, "Try it opens this model"
