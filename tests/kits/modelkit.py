"""Model helpers for the tests: tinygrad's logits for the weights a compiled model ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_webgpu.core import config


def reference_logits(project: Path, name: str, form: str, images: np.ndarray) -> np.ndarray:
    """tinygrad on the CPU with the exact float32 weights the browser expands from `form`."""
    from safetensors.numpy import load
    from tinygrad import Tensor

    from mnist_webgpu.core import layout
    from mnist_webgpu.export import forms, webgpu
    from mnist_webgpu.models import zoo as models

    cfg = config.load(project / "config.toml")
    blob = (layout.Layout(project).webgpu_dir(name) / layout.form_file(form)).read_bytes()
    weights = forms.expand(load(blob))
    model = models.build(cfg.model(name), cfg.train.outputs)
    webgpu.set_weights(model, weights)
    return model(Tensor(images.astype(np.float32)[:, None] / 255)).numpy()
