"""The model zoo: each architecture is one `Model` subclass, registered by its config `arch` name.

Every model takes (B, 1, 28, 28) float32 pixels in [0, 1], white ink on black, and
returns (B, outputs) logits: the ten digits, then "not a digit" when it was trained on
negatives (mnist_webgpu.train.verdict). The normalization lives inside the model, so the exported
kernels and the browser see exactly what training saw.

A new architecture is one class here, decorated `@model("<arch>")`, and one `[models.<name>]`
section in config.toml; everything downstream (config checks, the trainer, the exporter, both
browser backends, the site) asks the class or the graph tinygrad traces from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import ClassVar

from tinygrad import Context, Tensor, nn
from tinygrad.nn.state import get_parameters

from mnist_webgpu.core import rules
from mnist_webgpu.core.config import Config, ModelConfig

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
SIDE = 28

# The trainer's formulation of 3x3 convolutions: as matrix products (im2col) while training on
# the CPU, tinygrad's own conv2d everywhere else (the export, evaluation on other devices).
IM2COL: ContextVar[bool] = ContextVar("im2col", default=False)


def normalize(x: Tensor) -> Tensor:
    return (x - MNIST_MEAN) * (1 / MNIST_STD)


class Model:
    """A network: built from its config `widths` and output count, called on (B, 1, 28, 28) pixels."""

    arch: ClassVar[str]  # set by @model
    label: ClassVar[str]  # how the site names it
    description: ClassVar[str]  # one sentence for a reader new to networks (the model page)
    widths_mean: ClassVar[str]  # what the config's `widths` are to this architecture

    def __init__(self, widths: tuple[int, ...], outputs: int = 10):
        raise NotImplementedError

    def __call__(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    @classmethod
    def widths_error(cls, widths: tuple[int, ...]) -> str | None:
        """What is wrong with `widths` for this architecture (None: they build)."""
        return None

    def widest(self) -> int:
        """Values the widest intermediate (activation or training buffer) holds for one image."""
        raise NotImplementedError

    def widths(self) -> list[int]:
        """The `widths` this built model really has."""
        raise NotImplementedError

    def params(self) -> int:
        """Trained weights (batch norm's running statistics are state, not weights)."""
        return sum(math.prod(p.shape) for p in get_parameters(self) if p.is_param)

    def outputs(self) -> int:
        """How many logits it returns, from the graph it builds (nothing runs)."""
        return int(self(Tensor.empty(1, 1, SIDE, SIDE)).shape[-1])


REGISTRY: dict[str, type[Model]] = {}


def model(arch: str):
    """Registers a Model subclass under its config `arch` name."""

    def register(cls: type[Model]) -> type[Model]:
        if arch in REGISTRY:
            raise ValueError(f"two models registered as {arch!r}")
        cls.arch = arch
        REGISTRY[arch] = cls
        return cls

    return register


def build(cfg: ModelConfig, outputs: int = 10) -> Model:
    """A freshly initialised model for one validated [models.<name>] section (seed the RNG first);
    `outputs` is [train]'s TrainConfig.outputs."""
    return REGISTRY[cfg.arch](cfg.widths, outputs)


@contextmanager
def im2col(on: bool) -> Iterator[None]:
    """3x3 convolutions as matrix products inside the block (the trainer's faster formulation)."""
    token = IM2COL.set(on)
    try:
        yield
    finally:
        IM2COL.reset(token)


# Limits that keep a valid config within what one machine can train and a browser can run.
MAX_PARAMS = 100_000_000  # 400 MB of float32 weights to download, four times that to train with Adam
MAX_ACTIVATIONS = 1 << 28  # float32 values one layer's output holds for a batch: 1 GiB


def check(cfg: Config) -> None:
    """The rules only the model classes know, for every [models.<name>] section, as a ConfigError
    naming the key."""
    err = rules.error_factory(Path(cfg.named))
    for m in cfg.models:
        check_model(m, cfg.train.outputs, lambda key, m=m: f"models.{m.name}.{key}", err)


def check_model(m: ModelConfig, outputs: int, where, err) -> None:
    """One model's zoo rules; `where(key)` names the key in the file (a sweep trial's own value,
    or the section's). Builds the model on tinygrad's NULL device: shapes only, nothing allocated."""
    cls = REGISTRY.get(m.arch)
    if cls is None:
        raise err(where("arch"), f"one of {', '.join(REGISTRY)}", m.arch)
    if problem := cls.widths_error(m.widths):
        raise err(where("widths"), problem, list(m.widths))
    with Context(DEV="NULL"):
        net = cls(m.widths, outputs)
    params, widest = net.params(), net.widest()
    if params > MAX_PARAMS:
        raise err(
            where("widths"),
            f"at most {MAX_PARAMS:,} weights in all (the browser downloads every one); these make {params:,}",
            list(m.widths),
        )
    if m.batch_size * widest > MAX_ACTIVATIONS:
        raise err(
            where("batch_size"),
            f"at most {MAX_ACTIVATIONS // widest:,} for these widths (a layer's output for one batch "
            f"must stay under {MAX_ACTIVATIONS:,} values)",
            m.batch_size,
        )


# --- the zoo ------------------------------------------------------------------------------------


@model("mlp")
class MLP(Model):
    """784 -> widths... -> outputs, ReLU between layers."""

    label = "MLP"
    description = "layers of neurons, each seeing every pixel"
    widths_mean = "neurons per hidden layer"

    def __init__(self, widths: tuple[int, ...], outputs: int = 10):
        sizes = [SIDE * SIDE, *widths, outputs]
        self.layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]

    def __call__(self, x: Tensor) -> Tensor:
        x = normalize(x).flatten(1)
        for layer in self.layers[:-1]:
            x = layer(x).relu()
        return self.layers[-1](x)

    def widths(self) -> list[int]:
        return [int(layer.weight.shape[0]) for layer in self.layers[:-1]]

    def widest(self) -> int:
        return max(SIDE * SIDE, *(int(layer.weight.shape[0]) for layer in self.layers))


def conv3x3_im2col(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """`conv(x)` for a 3x3, padding-1 convolution, computed as one matrix product over patches.

    tinygrad's direct and Winograd convolution kernels (and their gradients) run at a few
    GFLOP/s on the CPU; a plain matrix product gets the CPU matmul tiles of train/cpu_patch.py. The
    patches are made contiguous so that tinygrad runs a real matrix product rather than
    fusing the patch gather back into a convolution-shaped kernel.
    """
    b, cin, h, w = x.shape
    cout = conv.weight.shape[0]
    padded = x.pad((1, 1, 1, 1))
    shifted = [padded[:, :, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
    # one row per output pixel, its columns in the weight's (cin, dy, dx) order
    patches = Tensor.stack(*shifted, dim=2).permute(0, 3, 4, 1, 2).reshape(b * h * w, cin * 9).contiguous()
    out = patches @ conv.weight.reshape(cout, cin * 9).T + conv.bias
    return out.reshape(b, h, w, cout).permute(0, 3, 1, 2)


def conv3x3(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 3x3, padding-1 convolution in the trainer's formulation (see IM2COL). Made contiguous
    there: batch norm after it otherwise recomputed the product's permuted output in its
    statistics and gradients (ResNet 8-16 steps 74 -> 50 ms on the CPU)."""
    return conv3x3_im2col(conv, x).contiguous() if IM2COL.get() else conv(x)


def conv3x3_widest(channels: list[int]) -> int:
    """The widest buffer of a stack of 3x3 convolutions, each halving the side: its outputs, and
    the im2col patches (9 values per input channel and pixel) while training."""
    widest = 0
    for i, (a, b) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
        side = SIDE >> i
        widest = max(widest, b * side * side, 9 * a * side * side)
    return widest


def max_pool_2x2(x: Tensor) -> Tensor:
    """`x.max_pool2d(2)`, as a max over a reshaped, contiguous copy when the sides are even.

    tinygrad's pooling backward on the CPU is one slow windowed kernel (14-75 ms for the
    first block); over a reshape it is an elementwise mask: the CNN step went 125 -> 103 ms.
    """
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        return x.max_pool2d(2)
    return x.contiguous().reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


class ConvStages(Model):
    """A model whose `widths` are a stack of 3x3 convolutions (`self.convs`, from
    conv3x3_stack), each stage halving the 28x28 image with a 2x2 max-pool."""

    stage: ClassVar[str]  # what one width builds, as the config's messages name it

    @classmethod
    def widths_error(cls, widths: tuple[int, ...]) -> str | None:
        if SIDE >> len(widths) < 1:
            return f"at most 4 {cls.stage}s (a 28x28 image halves once per {cls.stage.split()[-1]})"
        return None

    def widths(self) -> list[int]:
        return [int(c.weight.shape[0]) for c in self.convs]


def conv3x3_stack(widths: tuple[int, ...]) -> list[nn.Conv2d]:
    channels = [1, *widths]
    return [nn.Conv2d(a, b, 3, padding=1) for a, b in zip(channels[:-1], channels[1:], strict=True)]


@model("cnn")
class CNN(ConvStages):
    """Blocks of 3x3 conv -> ReLU -> 2x2 max-pool (one per width), then a small dense head."""

    label = "CNN"
    description = "small filters slid over the image, then layers of neurons"
    widths_mean = "filters per convolution block"
    stage = "CNN block"
    HEAD = 128

    def __init__(self, widths: tuple[int, ...], outputs: int = 10):
        self.convs = conv3x3_stack(widths)
        side = SIDE >> len(widths)
        self.fc1 = nn.Linear(widths[-1] * side * side, self.HEAD)
        self.fc2 = nn.Linear(self.HEAD, outputs)

    def __call__(self, x: Tensor) -> Tensor:
        x = normalize(x)
        for conv in self.convs:
            x = self.block(conv, x)
        return self.fc2(self.fc1(x.flatten(1)).relu())

    def block(self, conv: nn.Conv2d, x: Tensor) -> Tensor:
        if IM2COL.get():
            return max_pool_2x2(conv3x3_im2col(conv, x).relu())
        return conv(x).relu().max_pool2d(2)

    def widest(self) -> int:
        return max(conv3x3_widest([1, *self.widths()]), self.HEAD)


@model("resnet")
class ResNet(ConvStages):
    """Stages of 3x3 conv -> batch norm -> ReLU -> 2x2 max-pool, the last with a residual block
    (two convolutions and a shortcut around them), then the average over the image -> dense."""

    label = "ResNet"
    description = (
        "small filters slid over the image, normalized per batch, with a shortcut around the last block"
    )
    widths_mean = "filters per convolution stage"
    stage = "ResNet stage"

    def __init__(self, widths: tuple[int, ...], outputs: int = 10):
        self.convs = conv3x3_stack(widths)
        self.norms = [nn.BatchNorm(b) for b in widths]
        last = widths[-1]
        self.res = [nn.Conv2d(last, last, 3, padding=1), nn.Conv2d(last, last, 3, padding=1)]
        self.res_norms = [nn.BatchNorm(last), nn.BatchNorm(last)]
        self.fc = nn.Linear(last, outputs)

    def __call__(self, x: Tensor) -> Tensor:
        x = normalize(x)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = max_pool_2x2(norm(conv3x3(conv, x)).relu())
        (c1, c2), (n1, n2) = self.res, self.res_norms
        x = (x + n2(conv3x3(c2, n1(conv3x3(c1, x)).relu()))).relu()
        return self.fc(x.mean(axis=(2, 3)))

    def widest(self) -> int:
        ws = self.widths()
        side = SIDE >> len(ws)
        return max(conv3x3_widest([1, *ws]), 9 * ws[-1] * side * side)
