"""bench/cpu_versus.py's scratch export: what it races must be what the compile stage ships."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import pytest
from kits.projectkit import FAST_CONFIG, FAST_MODELS, ROOT

from mnist_webgpu.core import records
from mnist_webgpu.core.layout import Layout

EXPORT = """
import sys
from pathlib import Path
sys.path.insert(0, {bench!r})
import cpu_versus
from mnist_webgpu.core import config
cfg = config.load({config!r})
for name in cfg.model_names:
    cpu_versus.export_untrained(cfg, name, Path({out!r}))
"""


@pytest.mark.slow
def test_untrained_export_is_a_current_manifest_with_its_files(tmp_path):
    # its own process: the bench chooses tinygrad's devices before tinygrad loads
    code = EXPORT.format(bench=str(ROOT / "bench"), config=str(FAST_CONFIG), out=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    project = Layout(tmp_path)
    for name in FAST_MODELS:
        manifest = records.read(records.Manifest, project.manifest(name))
        assert manifest.format == records.MANIFEST_FORMAT and manifest.name == name
        folder = project.webgpu_dir(name)
        (form,) = manifest.forms
        assert hashlib.sha256((folder / form.file).read_bytes()).hexdigest() == form.sha256
        assert hashlib.sha256((folder / manifest.cpu.file).read_bytes()).hexdigest() == manifest.cpu.sha256
        for key, spec in manifest.weights.items():
            assert spec.order == ([1, 2, 3, 0] if len(spec.shape) == 4 else None), key
