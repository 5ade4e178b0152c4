"""Model helpers for the tests: weights as the train stage writes them, and tinygrad's logits
for the weights a compiled model ships."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mnist_webgpu import config, data


def write_weights(cfg: config.Config, name: str, train_steps: int, mnist: data.Mnist) -> Path:
    """build/models/<name>/weights.safetensors as the train stage writes it: random, or briefly trained."""
    from tinygrad import Context, Tensor, TinyJit, nn
    from tinygrad.nn.state import get_state_dict, safe_save

    from mnist_webgpu import models

    Tensor.manual_seed(0)
    model = models.build(cfg.model(name))
    if train_steps:
        opt = nn.optim.Adam(nn.state.get_parameters(model), lr=3e-3)

        # jitted: scheduling every step afresh took ~40 s of a quiet machine for 300 steps
        @TinyJit
        def step(x: Tensor, y: Tensor) -> Tensor:
            with Context(TRAINING=1):
                opt.zero_grad()
                loss = model(x).sparse_categorical_crossentropy(y).backward()
                return loss.realize(*opt.schedule_step())

        rng = np.random.default_rng(0)
        cut = (cfg.train.train_limit or 60000) - cfg.train.val_size  # never train on validation
        for _ in range(train_steps):
            idx = rng.integers(0, cut, 64)
            x = Tensor(mnist.train_x[idx].astype(np.float32)[:, None] / 255)
            step(x, Tensor(mnist.train_y[idx].astype(np.int32)))
    path = cfg.base_dir / "build" / "models" / name / "weights.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    safe_save(get_state_dict(model), str(path))
    return path


def reference_logits(project: Path, name: str, form: str, images: np.ndarray) -> np.ndarray:
    """tinygrad on the CPU with the exact float32 weights the browser expands from `form`."""
    from safetensors.numpy import load
    from tinygrad import Tensor
    from tinygrad.nn.state import get_state_dict

    from mnist_webgpu import forms, layout, models

    cfg = config.load(project / "config.toml")
    blob = (project / "build" / "webgpu" / name / layout.form_file(form)).read_bytes()
    weights = forms.expand(load(blob))
    model = models.build(cfg.model(name))
    for key, t in get_state_dict(model).items():
        t.replace(Tensor(weights[key])).realize()
    return model(Tensor(images.astype(np.float32)[:, None] / 255)).numpy()
