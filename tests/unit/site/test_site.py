"""The site stage without a browser: outputs, links, hashing, charts, the doit task."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
import struct
import xml.etree.ElementTree as ET
import zlib
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse

import numpy as np
import pytest
from kits import sitekit
from kits.projectkit import git

from mnist_webgpu.core import layout, records
from mnist_webgpu.core.layout import CPU_MODULE, SiteModel
from mnist_webgpu.pipeline import tasks
from mnist_webgpu.site import charts
from mnist_webgpu.site import pages as page_templates
from mnist_webgpu.site import render as site

CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory, fast_config, mnist):
    tmp = tmp_path_factory.mktemp("site")
    paths = sitekit.make_inputs(tmp, fast_config, mnist)
    out = site.render(fast_config, tmp / "out", paths)
    return fast_config, paths, out


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[dict] = []
        self.styled: list[str] = []
        self.handlers: list[str] = []
        self.meta: list[dict] = []
        self.testids: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("href", "src"):
            if a.get(key):
                self.urls.append(a[key])
        if tag == "script":
            self.scripts.append(a)
        if tag == "meta":
            self.meta.append(a)
        if "style" in a:
            self.styled.append(tag)
        self.handlers += [k for k in a if k.startswith("on")]
        if "data-testid" in a:
            self.testids.append(a["data-testid"])


def parse(path: Path) -> Links:
    p = Links()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def pages(out: Path) -> list[Path]:
    return sorted(out.rglob("*.html"))


def test_layout(built):
    cfg, _, out = built
    assert (out / "index.html").is_file() and (out / "404.html").is_file()
    assert (out / ".nojekyll").is_file()
    for name in cfg.model_names:
        assert (out / "models" / f"{name}.html").is_file()
        manifest = json.loads((out / "models" / name / "manifest.json").read_text())
        (default,) = [f for f in manifest["forms"] if f["form"] == manifest["default_form"]]
        assert (out / "models" / name / default["file"]).is_file()
    hashed = [p.name for p in (out / "assets").iterdir()]
    for stem in ("app", "draw", "preprocess", "runtime", "cpu", "style", "favicon"):
        assert any(re.fullmatch(rf"{stem}\.[0-9a-f]{{10}}\.\w+", n) for n in hashed), stem
    assert not list(out.parent.glob(".out.*")), "staging directories are cleaned up"


def test_every_link_resolves_and_stays_relative(built):
    cfg, _, out = built
    for page in pages(out):
        links = parse(page)
        rel = page.relative_to(out).as_posix()
        for url in links.urls:
            if url.startswith("data:image/png;base64,"):
                continue
            parsed = urlparse(url)
            assert not parsed.scheme and not parsed.netloc and not url.startswith("/"), (rel, url)
            target = urlparse(urljoin("http://x/" + rel, url)).path.lstrip("/")
            assert (out / target).is_file(), (rel, url)


def test_js_imports_resolve_to_hashed_files(built):
    _, _, out = built
    for js in (out / "assets").glob("*.js"):
        for m in re.finditer(r"""(?:from|import)\s*\(?\s*["']([^"']+)["']""", js.read_text()):
            spec = m[1]
            assert re.search(r"\.[0-9a-f]{10}\.js$", spec), (js.name, spec)
            assert (js.parent / spec).resolve().is_file(), (js.name, spec)


def test_models_json_block(built):
    cfg, _, out = built
    html = (out / "index.html").read_text()
    block = re.search(r'<script type="application/json" id="models">(.*?)</script>', html, re.S)
    data = json.loads(block[1])
    assert data["default"] == cfg.default_model
    assert [m["name"] for m in data["models"]] == list(cfg.model_names)
    for m in data["models"]:
        assert (out / m["manifest"]).is_file()


def test_pages_are_csp_clean(built):
    _, _, out = built
    for page in pages(out):
        links = parse(page)
        csp = [m["content"] for m in links.meta if m.get("http-equiv") == "Content-Security-Policy"]
        inline = re.findall(r"<script>(.*?)</script>", page.read_text(), re.S)
        if page.name == "404.html":
            # served at any missing URL, it must find the site's root before it can load a file: one
            # inline script, allowed by its hash alone (and no WebAssembly on this page)
            (code,) = inline
            digest = base64.b64encode(hashlib.sha256(code.encode()).digest()).decode()
            assert csp == [CSP.replace("'wasm-unsafe-eval'", f"'sha256-{digest}'")], page
        else:
            assert csp == [CSP] and not inline, page
        assert not links.styled, f"{page}: inline style attributes are blocked by the CSP"
        assert not links.handlers, f"{page}: inline event handlers are blocked by the CSP"
        for s in links.scripts:
            assert s.get("type") == "application/json" or s.get("src") or page.name == "404.html", page
        assert "<style" not in page.read_text()
        assert page.name == "404.html" or any(u.endswith(".svg") for u in links.urls), "favicon link"


def test_app_hooks(built):
    cfg, _, out = built
    ids = set(parse(out / "index.html").testids)
    wanted = {"canvas", "tool-pen", "tool-eraser", "clear", "model-select", "prediction", "confidence"}
    wanted |= {"latency", "backend", "preview"} | {f"prob-{d}" for d in range(10)}
    assert wanted <= ids
    html = (out / "index.html").read_text()
    assert 'data-ready="false"' in html
    options = re.findall(r'<option value="([^"]+)"', html)
    assert options == list(cfg.model_names)


def test_model_page_content(built, mnist):
    cfg, paths, out = built
    html = (out / "models" / "mlp.html").read_text()
    metrics = json.loads((paths.layout.model_dir("mlp") / "metrics.json").read_text())
    assert f"{metrics['test_accuracy'] * 100:.2f}%" in html
    assert f"{metrics['val_accuracy'] * 100:.2f}%" in html
    assert "7\u202f850" in html  # parameters
    for form in ("f32", "f16", "int8"):
        assert f"<td>{form}" in html
    svgs = re.findall(r"<svg xmlns=.*?</svg>", html, re.S)
    assert len(svgs) >= 4  # two curves, confusion matrix, per-class accuracy
    for svg in svgs:
        ET.fromstring(svg)  # well-formed XML
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(imgs) == cfg.site.misclassified_shown
    mis = json.loads((paths.layout.model_dir("mlp") / "misclassified.json").read_text())
    first = decode_png(base64.b64decode(imgs[0]))
    assert np.array_equal(first, mnist.test_x[mis["indices"][0]])
    # the suite runs in a git checkout: the page names its real commit, never "unknown"
    commit = git(cfg.base_dir, "rev-parse", "HEAD")
    assert re.fullmatch(r"[0-9a-f]{40,64}", commit)
    assert f'<code title="{commit}">{commit[:10]}</code>' in html
    assert "unknown" not in html


def decode_png(blob: bytes) -> np.ndarray:
    assert blob[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    w = h = 0
    while pos < len(blob):
        (n,) = struct.unpack(">I", blob[pos : pos + 4])
        kind, payload = blob[pos + 4 : pos + 8], blob[pos + 8 : pos + 8 + n]
        assert struct.unpack(">I", blob[pos + 8 + n : pos + 12 + n])[0] == zlib.crc32(kind + payload)
        if kind == b"IHDR":
            w, h = struct.unpack(">II", payload[:8])
        elif kind == b"IDAT":
            idat += payload
        pos += 12 + n
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, w + 1)
    assert (raw[:, 0] == 0).all()
    return raw[:, 1:]


def test_svg_charts_are_valid_xml():
    cases = [
        charts.line_chart([0, 50, 100], [2.3, 1.0, 0.4], title="Loss <&>"),
        charts.line_chart([0, 50, 100], [None, 0.9, 0.95], title="Acc", percent=True),
        charts.line_chart([], [], title="empty"),
        charts.line_chart([5], [0.5], title="one point"),
        charts.line_chart([0, 1], [float("nan"), 1.0], title="nan"),
        charts.confusion_matrix(np.diag([10] * 10).tolist()),
        charts.confusion_matrix(np.random.default_rng(0).integers(0, 50, (10, 10)).tolist()),
        charts.class_accuracy([1.0] * 10),
        charts.class_accuracy([0.9 + 0.01 * i for i in range(10)]),
    ]
    for svg in cases:
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert root.find("{http://www.w3.org/2000/svg}title") is not None
        assert "style=" not in svg


def test_nice_ticks():
    assert charts.nice_ticks(0, 1, 5) == [0, 0.25, 0.5, 0.75, 1.0]
    t = charts.nice_ticks(0.81, 0.838, 5)
    assert t[0] <= 0.81 and t[-1] >= 0.838


def test_png_roundtrip():
    img = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
    assert np.array_equal(decode_png(charts.png_gray(img)), img)


def test_hashed_names_change_with_content(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(sitekit.ROOT / "site_src", src)
    shutil.copyfile(sitekit.FAKE_RUNTIME, src / "runtime.js")
    before, _ = site.hashed_assets(src)
    again, _ = site.hashed_assets(src)
    assert before == again, "names are deterministic"
    (src / "preprocess.js").write_text((src / "preprocess.js").read_text() + "\n// changed\n")
    after, blobs = site.hashed_assets(src)
    assert after["preprocess.js"] != before["preprocess.js"]
    assert after["app.js"] != before["app.js"], "an importer is renamed when a module it imports changes"
    assert after["draw.js"] == before["draw.js"]
    assert after["style.css"] == before["style.css"]
    app = blobs[after["app.js"]].decode()
    assert "./" + Path(after["preprocess.js"]).name in app
    assert '"./preprocess.js"' not in app


def test_each_models_cpu_module_ships_beside_its_manifest(built):
    """No WebAssembly of the site's own: each model's generated module ships as compile wrote it."""
    cfg, paths, out = built
    assert not [p for p in out.rglob("*") if p.suffix in (".wat", ".wasm") and "models" not in p.parts]
    for name in cfg.model_names:
        model = SiteModel(name)
        shipped = out / model.file(CPU_MODULE)
        assert shipped.read_bytes() == (paths.layout.webgpu_dir(name) / CPU_MODULE).read_bytes()
        assert shipped.read_bytes()[:8] == b"\0asm\x01\0\0\0"


def test_import_cycles_and_subdirectories(tmp_path):
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    (src / "app.js").write_text('import { b } from "./lib/b.js";\nexport const a = 1;\n')
    (src / "lib" / "b.js").write_text('import { a } from "../app.js";\nexport const b = () => a;\n')
    (src / "style.css").write_text('body { background: url("./lib/bg.svg"); }\n')
    (src / "lib" / "bg.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (src / ".hidden.js").write_text("")
    names, blobs = site.hashed_assets(src)
    assert set(names) == {"app.js", "lib/b.js", "style.css", "lib/bg.svg"}
    b = blobs[names["lib/b.js"]].decode()
    assert f'"../{Path(names["app.js"]).name}"' in b
    assert f'"./lib/{Path(names["lib/bg.svg"]).name}"' in blobs[names["style.css"]].decode()


def test_missing_artefact_is_one_clear_error(tmp_path, fast_config, mnist):
    paths = sitekit.make_inputs(tmp_path, fast_config, mnist)
    (paths.layout.model_dir("cnn") / "metrics.json").unlink()
    with pytest.raises(records.SchemaError, match=r"cnn/metrics.json: missing \(run `doit train:cnn`\)"):
        site.render(fast_config, tmp_path / "out", paths)
    assert not (tmp_path / "out").exists()


def test_an_artefact_off_its_schema_is_one_line_naming_file_and_key(tmp_path, fast_config, mnist):
    paths = sitekit.make_inputs(tmp_path, fast_config, mnist)
    manifest = paths.layout.manifest("mlp")
    data = json.loads(manifest.read_text())
    data["model"]["widths"] = "wide"
    manifest.write_text(json.dumps(data))
    with pytest.raises(
        records.SchemaError, match=r"mlp/manifest.json: model.widths: expected a list of an integer"
    ):
        site.render(fast_config, tmp_path / "out", paths)
    del data["model"]
    data["arch"] = "mlp"  # the shape the site used to guess at
    manifest.write_text(json.dumps(data))
    with pytest.raises(records.SchemaError, match=r"mlp/manifest.json: arch: unknown key"):
        site.render(fast_config, tmp_path / "out", paths)
    assert not (tmp_path / "out").exists()


def test_json_block_cannot_close_the_script():
    assert "</script>" not in page_templates.json_script({"x": "</script><script>alert(1)</script>"})


def test_template_files_follow_includes():
    names = {
        p.relative_to(sitekit.ROOT / "templates").as_posix()
        for p in site.template_files(sitekit.ROOT / "templates")
    }
    assert {"base.html", "index.html", "model.html", "404.html", "partials/header.html"} <= names
    assert {"partials/footer.html", "partials/model_card.html"} <= names


def test_site_task(fast_config):
    task = tasks.site_task(fast_config)
    deps = {Path(p) for p in task["file_dep"]}
    paths = site.default_paths(fast_config)
    assert set(site.template_files(paths.templates)) <= deps
    assert set(site.source_files(paths.site_src)) <= deps
    assert paths.test_images() in deps
    for name in fast_config.model_names:
        assert paths.layout.train_outputs(name).metrics in deps
        assert paths.layout.train_outputs(name).misclassified in deps
        assert paths.layout.manifest(name) in deps
    assert Path(site.__file__) in deps
    assert Path(page_templates.__file__) in deps  # computed from the imports, not listed
    assert task["targets"] == [str(layout.PROJECT.site_staging / "index.html")]
    assert len(task["uptodate"]) == 1


def test_an_import_of_a_missing_module_fails_the_build(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "app.js").write_text('import { loadModel } from "./runtime.js";\n')
    with pytest.raises(site.SiteError, match=r"app.js: imports ./runtime.js, which is not in"):
        site.hashed_assets(src)


def test_verify_reads_every_file_the_app_loads_from_the_rendered_site(built):
    """The models JSON, the web app manifest and the service worker's list, as verify reads them."""
    from mnist_webgpu.publish import checks, verify

    cfg, _, out = built
    assert verify.check_references(out) == []
    models, problems = verify.app_models(out)
    assert problems == [] and [m["name"] for m in models] == list(cfg.model_names)
    page = checks.scan_page((out / "index.html").read_text())
    named = dict(checks.json_urls(json.loads(page.data["models"])))
    assert {named[f"models[{i}].manifest"] for i in range(len(models))} == {m["manifest"] for m in models}
    icons = dict(checks.json_urls(json.loads((out / "app.webmanifest").read_text())))
    assert icons["icons[0].src"].startswith("assets/favicon.")
    cached = [u for _, u in checks.precached((out / "sw.js").read_text())]
    assert "app.webmanifest" in cached and f"models/{cfg.default_model}/manifest.json" in cached
