"""The compiled models rebuilt as ONNX graphs, so ONNX Runtime Web runs the very weights we ship.

    python bench/onnx_model.py build/webgpu/mlp [--form f32] [--out mlp.onnx]

The graph is written by hand with `onnx.helper` from the manifest's architecture (the
`model` entry: arch, widths, normalize) and one weight form expanded to float32 exactly
as the browser expands it (forms.expand), so both runtimes compute with identical numbers:
  mlp: normalize -> flatten -> (Gemm, Relu)* -> Gemm
  cnn: normalize -> (Conv 3x3 pad 1, Relu, MaxPool 2)* -> flatten -> Gemm -> Relu -> Gemm
  resnet: normalize -> (Conv, BatchNormalization, Relu, MaxPool 2)* -> a residual block of two
    (Conv, BatchNormalization) with Add -> GlobalAveragePool -> Gemm
Input "pixels" (1, 1, 28, 28) float32 in [0, 1]; output "logits" (1, outputs): ten digits, and
"not a digit" where the model has it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from mnist_webgpu.core.errors import PipelineError  # noqa: E402
from mnist_webgpu.core.layout import MANIFEST  # noqa: E402
from mnist_webgpu.export import forms  # noqa: E402

# opset 17 / IR 8: old enough for any onnxruntime-web of the last years, new enough for every op used
OPSET = 17
IR_VERSION = 8
INPUT, OUTPUT = "pixels", "logits"


def require_onnx():
    try:
        import onnx
    except ImportError:
        raise PipelineError(
            "the bench needs the onnx package: pip install -e '.[bench]' (or pip install onnx)"
        ) from None
    return onnx


def expanded_weights(model_dir: Path, form: str) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    manifest = json.loads((model_dir / MANIFEST).read_text())
    entry = next((f for f in manifest["forms"] if f["form"] == form), None)
    if entry is None:
        raise PipelineError(f"{model_dir / MANIFEST}: no weight form {form!r}")
    return forms.expand(load((model_dir / entry["file"]).read_bytes()))


def build(model: dict, weights: dict[str, np.ndarray]):
    """An onnx.ModelProto for the manifest's `model` entry and float32 weights keyed as in the state dict."""
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    arch, widths = model["arch"], list(model["widths"])
    mean, std = model.get("normalize", {}).get("mean", 0.1307), model.get("normalize", {}).get("std", 0.3081)
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def node(op: str, inputs: list[str], **attrs) -> str:
        out = f"{op.lower()}_{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def gemm(x: str, prefix: str) -> str:
        # tinygrad's Linear keeps weight as (out, in): Gemm with transB computes x @ W.T + b
        w, b = (
            const(f"{prefix}.weight", weights[f"{prefix}.weight"]),
            const(f"{prefix}.bias", weights[f"{prefix}.bias"]),
        )
        return node("Gemm", [x, w, b], transB=1)

    # the same two float ops as models.normalize: (x - mean) * (1 / std)
    x = node("Sub", [INPUT, const("mean", np.array(mean, np.float32))])
    x = node("Mul", [x, const("inv_std", np.array(1 / std, np.float32))])
    if arch == "mlp":
        x = node("Flatten", [x], axis=1)
        for i in range(len(widths)):
            x = node("Relu", [gemm(x, f"layers.{i}")])
        x = gemm(x, f"layers.{len(widths)}")
    elif arch == "cnn":
        for i in range(len(widths)):
            w, b = (
                const(f"convs.{i}.weight", weights[f"convs.{i}.weight"]),
                const(f"convs.{i}.bias", weights[f"convs.{i}.bias"]),
            )
            x = node("Relu", [node("Conv", [x, w, b], kernel_shape=[3, 3], pads=[1, 1, 1, 1])])
            x = node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        x = node("Flatten", [x], axis=1)
        x = gemm(node("Relu", [gemm(x, "fc1")]), "fc2")
    elif arch == "resnet":

        def conv_norm(x: str, conv: str, norm: str) -> str:
            w, b = (
                const(f"{conv}.weight", weights[f"{conv}.weight"]),
                const(f"{conv}.bias", weights[f"{conv}.bias"]),
            )
            x = node("Conv", [x, w, b], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
            stats = [
                const(f"{norm}.{k}", weights[f"{norm}.{k}"])
                for k in ("weight", "bias", "running_mean", "running_var")
            ]
            return node("BatchNormalization", [x, *stats], epsilon=1e-5)

        for i in range(len(widths)):
            x = node("Relu", [conv_norm(x, f"convs.{i}", f"norms.{i}")])
            x = node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
        inner = node("Relu", [conv_norm(x, "res.0", "res_norms.0")])
        x = node("Relu", [node("Add", [x, conv_norm(inner, "res.1", "res_norms.1")])])
        x = gemm(node("Flatten", [node("GlobalAveragePool", [x])], axis=1), "fc")
    else:
        raise PipelineError(f"no ONNX conversion for model arch {arch!r} (known: mlp, cnn, resnet)")
    nodes.append(helper.make_node("Identity", [x], [OUTPUT]))
    last = {"mlp": f"layers.{len(widths)}.bias", "cnn": "fc2.bias"}.get(arch, "fc.bias")

    graph = helper.make_graph(
        nodes,
        f"mnist_{arch}",
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, [1, 1, 28, 28])],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, len(weights[last])])],
        inits,
    )
    proto = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mnist-webgpu"
    )
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    return proto


def from_model_dir(model_dir: Path, form: str):
    manifest = json.loads((model_dir / MANIFEST).read_text())
    return build(manifest["model"], expanded_weights(model_dir, form))


def reference_logits(proto, images: np.ndarray) -> np.ndarray:
    """The graph evaluated by onnx's own reference evaluator (pure numpy), one image at a time."""
    from onnx.reference import ReferenceEvaluator

    session = ReferenceEvaluator(proto)
    pixels = images.reshape(-1, 1, 1, 28, 28).astype(np.float32)
    return np.concatenate([session.run(None, {INPUT: p})[0] for p in pixels])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="build/webgpu/<name> (manifest.json and weight files)")
    parser.add_argument("--form", default=None, help="weight form (default: the manifest's default)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    try:
        form = args.form or json.loads((args.model_dir / MANIFEST).read_text())["default_form"]
        proto = from_model_dir(args.model_dir, form)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = args.out or Path(f"{args.model_dir.name}.onnx")
    out.write_bytes(proto.SerializeToString())
    print(f"{out}: {out.stat().st_size:,} bytes ({form} weights)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
