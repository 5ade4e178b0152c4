"""The model zoo: each architecture is one class, registered by its config `arch` name.

Every model takes (B, 1, 28, 28) float32 pixels in [0, 1], white ink on black, and
returns (B, outputs) logits: the ten digits, then "not a digit" when it was trained on
negatives (mnist_webgpu.train.verdict). The normalization lives inside the model, so the exported
kernels and the browser see exactly what training saw.
"""

from __future__ import annotations

from tinygrad import Tensor, nn

from mnist_webgpu.core.config import ModelConfig

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def normalize(x: Tensor) -> Tensor:
    return (x - MNIST_MEAN) * (1 / MNIST_STD)


class MLP:
    """784 -> widths... -> outputs, ReLU between layers."""

    def __init__(self, widths: tuple[int, ...], outputs: int = 10):
        sizes = [28 * 28, *widths, outputs]
        self.layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]

    def __call__(self, x: Tensor) -> Tensor:
        x = normalize(x).flatten(1)
        for layer in self.layers[:-1]:
            x = layer(x).relu()
        return self.layers[-1](x)


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


def max_pool_2x2(x: Tensor) -> Tensor:
    """`x.max_pool2d(2)`, as a max over a reshaped, contiguous copy when the sides are even.

    tinygrad's pooling backward on the CPU is one slow windowed kernel (14-75 ms for the
    first block); over a reshape it is an elementwise mask: the CNN step went 125 -> 103 ms.
    """
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        return x.max_pool2d(2)
    return x.contiguous().reshape(b, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


class CNN:
    """Blocks of 3x3 conv -> ReLU -> 2x2 max-pool (one per width), then a small dense head."""

    HEAD = 128

    def __init__(self, widths: tuple[int, ...], outputs: int = 10):
        self.im2col = False  # the trainer's faster formulation (im2col); export traces conv2d
        channels = [1, *widths]
        self.convs = [nn.Conv2d(a, b, 3, padding=1) for a, b in zip(channels[:-1], channels[1:], strict=True)]
        side = 28 >> len(widths)
        self.fc1 = nn.Linear(widths[-1] * side * side, self.HEAD)
        self.fc2 = nn.Linear(self.HEAD, outputs)

    def __call__(self, x: Tensor) -> Tensor:
        x = normalize(x)
        for conv in self.convs:
            x = self.block(conv, x)
        return self.fc2(self.fc1(x.flatten(1)).relu())

    def block(self, conv: nn.Conv2d, x: Tensor) -> Tensor:
        if self.im2col:
            return max_pool_2x2(conv3x3_im2col(conv, x).relu())
        return conv(x).relu().max_pool2d(2)


ARCHITECTURES = {"mlp": MLP, "cnn": CNN}


def widths(model) -> list[int]:
    """The hidden sizes (MLP) or channels per block (CNN) a built model really has."""
    if isinstance(model, CNN):
        return [int(c.weight.shape[0]) for c in model.convs]
    return [int(layer.weight.shape[0]) for layer in model.layers[:-1]]


def outputs(model) -> int:
    """How many logits a built model returns."""
    last = model.fc2 if isinstance(model, CNN) else model.layers[-1]
    return int(last.weight.shape[0])


def build(cfg: ModelConfig, outputs: int = 10):
    """A freshly initialised model for one validated [models.<name>] section (seed the RNG first);
    `outputs` is [train]'s TrainConfig.outputs."""
    return ARCHITECTURES[cfg.arch](cfg.widths, outputs)
