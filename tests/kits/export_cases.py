"""Models built to break the exporter, traced in a process of their own.

tinygrad must be imported with DEV="CPU;NULL:WGSL", so test_export.py runs this file
as a script and reads one JSON object: case name -> the ExportError line (or "ok").
"""

import json
import os
import sys

os.environ["DEV"] = "CPU;NULL:WGSL"

from tinygrad import Tensor, Variable, dtypes, nn
from tinygrad.nn.state import get_state_dict

from mnist_webgpu.export import wasm
from mnist_webgpu.export import webgpu as export


class Linear:
    """784 -> 10: one kernel binding input, weight, bias and output (4 buffers)."""

    def __init__(self):
        self.fc = nn.Linear(784, 10)

    def __call__(self, x):
        return self.fc(x.flatten(1))


class HalfWeight(Linear):
    """Keeps its weight in float16, as a model converted with .half() does."""

    def __init__(self):
        super().__init__()
        self.fc.weight = self.fc.weight.half()

    def __call__(self, x):
        return x.flatten(1) @ self.fc.weight.float().T + self.fc.bias


class Int64Counter(Linear):
    """Reads an int64 state tensor in its forward pass."""

    def __init__(self):
        super().__init__()
        self.steps = Tensor([3], dtype=dtypes.int64)

    def __call__(self, x):
        return super().__call__(x) + self.steps.float()


class UnusedWeight(Linear):
    """Carries a float tensor its forward pass never reads."""

    def __init__(self):
        super().__init__()
        self.spare = Tensor.ones(10)


class BatchNormCounter(Linear):
    """Carries an int64 num_batches_tracked counter, like BatchNorm: skipped on purpose."""

    def __init__(self):
        super().__init__()
        self.num_batches_tracked = Tensor([0], dtype=dtypes.int64)


class ConstantInForward(Linear):
    """Creates a tensor on the CPU inside forward: the schedule gets a copy, not a kernel."""

    def __call__(self, x):
        return super().__call__(x) + Tensor.ones(1, 10, device="CPU").to("NULL")


class SymbolicWidth(Linear):
    """Reads a variable number of pixels: the kernel's shape is symbolic."""

    def __call__(self, x):
        width = Variable("width", 1, 784).bind(784)
        return x.flatten(1)[:, :width].sum(1, keepdim=True) * self.fc.bias.reshape(1, 10) + self.fc(
            x.flatten(1)
        )


class Softmax(Linear):
    """Ends in a softmax: tinygrad 0.14 names two different kernels r_10 (its max and its sum)."""

    def __call__(self, x):
        return super().__call__(x).softmax()


class Sqrt(Linear):
    """Takes a square root: LibmSqrt below renders it as a call to libm's sqrtf."""

    def __call__(self, x):
        return super().__call__(x).abs().sqrt()


class LibmSqrt(export.WasmRenderer):
    """Renders SQRT as libm's sqrtf, as a C renderer would for an operation with no builtin:
    a freestanding module has no libm, so the operation cannot run on the CPU fallback."""

    code_for_op = {
        **export.WasmRenderer.code_for_op,
        next(k for k in export.WasmRenderer.code_for_op if k.name == "SQRT"): lambda x, dtype: f"sqrtf({x})",
    }


class NoSqrt(export.WasmRenderer):
    """Claims SQRT but renders nothing for it: tinygrad's C renderer fails on the operation,
    as it would on one it has no C for."""

    code_for_op = {
        **export.WasmRenderer.code_for_op,
        next(k for k in export.WasmRenderer.code_for_op if k.name == "SQRT"): lambda x, dtype: None,
    }


RENDERERS = {"libm_sqrt": LibmSqrt, "unrenderable": NoSqrt}

CASES = {
    "symbolic": (SymbolicWidth, 8),
    "too_many_buffers": (Linear, 3),
    "fits": (Linear, 4),
    "half_weight": (HalfWeight, 8),
    "int64_state": (Int64Counter, 8),
    "unused_weight": (UnusedWeight, 8),
    "batchnorm_counter": (BatchNormCounter, 8),
    "copy_in_forward": (ConstantInForward, 8),
    "softmax": (Softmax, 8),
    "libm_sqrt": (Sqrt, 8),
    "unrenderable": (Sqrt, 8),
}


def run(case: str) -> str:
    cls, max_buffers = CASES[case]
    Tensor.manual_seed(0)
    model = cls()
    state = get_state_dict(model)
    numpy_state = {k: v.numpy() for k, v in state.items()}
    renderer = RENDERERS[case]() if case in RENDERERS else None
    label = f"model {case!r}"
    try:
        traced = export.trace(model, state, max_buffers, label, c_renderer=renderer)
        skipped = export.check_all_bound(numpy_state, traced.bound_weights, label)
        cpu, blob = wasm.build(traced.c_kernels, traced.buffers, label)
    except (export.ExportError, wasm.WasmError) as exc:
        return str(exc)
    names = ",".join(k.name for k in cpu.kernels)
    return f"ok {len(traced.kernels)} kernels, skipped {skipped}, C {names}, exports {wasm.sections(blob)[1]}"


if __name__ == "__main__":
    print(json.dumps({case: run(case) for case in (sys.argv[1:] or CASES)}))
