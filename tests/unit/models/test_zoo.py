"""The model zoo: one class per architecture, registered once, its rules checked at load."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from tinygrad import Tensor, nn

from mnist_webgpu.core import config
from mnist_webgpu.models import zoo


def checked(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "c.toml"
    path.write_text(text)
    cfg = config.load(path)
    zoo.check(cfg)
    return cfg


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('[models.mlp]\narch = "rnn"\n', "models.mlp.arch", "expected one of mlp, cnn, resnet, got 'rnn'"),
        (
            '[models.c]\narch = "cnn"\nwidths = [8, 8, 8, 8, 8]\n',
            "models.c.widths",
            "expected at most 4 CNN blocks (a 28x28 image halves once per block), got [8, 8, 8, 8, 8]",
        ),
        (
            '[models.mlp]\narch = "mlp"\nwidths = [65536, 65536]\n',
            "models.mlp.widths",
            "expected at most 100,000,000 weights in all (the browser downloads every one); these make",
        ),
        (
            '[models.c]\narch = "cnn"\nwidths = [1024]\nbatch_size = 512\n',
            "models.c.batch_size",
            "expected at most 334 for these widths",
        ),
    ],
)
def test_the_zoo_names_the_key_its_rule_rejects(tmp_path, text, key, expected):
    with pytest.raises(config.ConfigError) as info:
        checked(tmp_path, text)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{tmp_path / 'c.toml'}: {key}: {expected}"), message


def test_a_sweep_trial_is_held_to_the_same_rules(tmp_path):
    from mnist_webgpu.sweep import plan

    cfg = checked(
        tmp_path, '[models.c]\narch = "cnn"\n[sweep.c]\ngrid = { widths = [[8, 8], [8, 8, 8, 8, 8]] }\n'
    )
    with pytest.raises(config.ConfigError, match=r"sweep\.c\.grid\.widths.*at most 4 CNN blocks"):
        plan.of(cfg)


@pytest.mark.parametrize("arch", sorted(zoo.REGISTRY))
def test_each_model_reports_the_shape_it_was_built_with(arch):
    widths = (8, 16)
    net = zoo.REGISTRY[arch](widths, 11)
    assert net.arch == arch and net.widths() == list(widths) and net.outputs() == 11
    trained = [p for p in nn.state.get_parameters(net) if p.is_param]
    assert net.params() == sum(math.prod(p.shape) for p in trained)  # running statistics are not weights
    out = net(Tensor.zeros(2, 1, 28, 28))
    assert out.shape == (2, 11) and np.isfinite(out.numpy()).all()
    assert net.widest() >= 28 * 28 or arch != "mlp"


def test_a_new_architecture_is_one_registered_class(tmp_path):
    @zoo.model("tiny_test_net")
    class Tiny(zoo.Model):
        label, description, widths_mean = "Tiny", "one layer", "unused"

        def __init__(self, widths, outputs=10):
            self.fc = nn.Linear(28 * 28, outputs)

        def __call__(self, x):
            return self.fc(zoo.normalize(x).flatten(1))

        def widths(self):
            return []

        def widest(self):
            return 28 * 28

    try:
        cfg = checked(tmp_path, '[models.t]\narch = "tiny_test_net"\nwidths = [1]\n')
        net = zoo.build(cfg.model("t"), cfg.train.outputs)
        assert isinstance(net, Tiny) and net.params() == 784 * cfg.train.outputs + cfg.train.outputs
        with pytest.raises(ValueError, match="two models registered as 'tiny_test_net'"):
            zoo.model("tiny_test_net")(Tiny)
    finally:
        del zoo.REGISTRY["tiny_test_net"]
