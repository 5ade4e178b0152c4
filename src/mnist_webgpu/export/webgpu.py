"""Compile one trained model into WGSL kernels, a manifest and weight files for the browser.

tinygrad 0.14 ships no exporter, so this traces the model on tinygrad's no-op NULL
device with the WGSL renderer (the process must start with DEV="CPU;NULL:WGSL", see
__main__.py) and reads kernels, launch sizes and buffer bindings from the compiled
schedule. Everything the browser will run is checked here, where a failure is one clear
line, instead of in the user's browser.

The same kernels are also rendered with tinygrad's C renderer for the CPU fallback, which
export/wasm.py compiles into one WebAssembly module: every reach into tinygrad's internals
for both backends is here.

build/webgpu/<name>/manifest.json              kernels in dispatch order, buffers, forms, cpu
build/webgpu/<name>/weights.<form>.safetensors one file per configured weight form
build/webgpu/<name>/cpu.wasm                   the CPU fallback: the same kernels, as wasm32 SIMD
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file
from tinygrad import Context, Device, Tensor, dtypes
from tinygrad.codegen import to_program
from tinygrad.codegen.opt import KernelOptError, Opt, OptOps
from tinygrad.codegen.opt.postrange import Scheduler
from tinygrad.device import Compiler
from tinygrad.engine.realize import compile_linear, get_call_arg_uops
from tinygrad.helpers import Target
from tinygrad.nn.state import get_state_dict
from tinygrad.renderer.cstyle import ClangRenderer, CStyleLanguage
from tinygrad.renderer.wgsl import WGSLRenderer
from tinygrad.uop.ops import AxisType, KernelInfo, Ops, UOp

from mnist_webgpu.core import faults, files, layout, records
from mnist_webgpu.core.config import Config
from mnist_webgpu.core.errors import PipelineError
from mnist_webgpu.data import mnist as data
from mnist_webgpu.data.split import mnist_split
from mnist_webgpu.drawings import preprocess
from mnist_webgpu.export import forms, wasm, wgsl_patch
from mnist_webgpu.models import zoo as models

INPUT_SHAPE = (1, 1, 28, 28)
EVAL_BATCH = 500
# int64 counters BatchNorm keeps for training; no forward pass reads them
SKIPPABLE_SUFFIX = "num_batches_tracked"
WIDE_DTYPES = {dtypes.int64: "int64", dtypes.uint64: "uint64", dtypes.float64: "float64"}


class ExportError(PipelineError):
    """The model cannot be shipped to the browser as configured; says which model and why."""


# --- tracing ----------------------------------------------------------------------------


@dataclasses.dataclass
class Trace:
    kernels: list[records.Kernel]
    buffers: list[records.Buffer]
    bound_weights: set[str]
    c_kernels: list[wasm.CKernel]  # the same kernels as C, for the CPU module
    orders: dict[str, list[int]]  # weight name -> the axis order its buffer holds (see kernel_order)


# Convolution weights (out, in, y, x) reach the kernels with the output channels innermost:
# the C kernels compute four output channels at a time (cpu_opts) and then load one tap's four
# weights as one float4 instead of four strided floats. Measured in Node on the CNN 16-32's
# kernels: its second convolution 108 -> 79 us, the forward pass 0.165 -> 0.139 ms.
KERNEL_ORDERS = {4: (1, 2, 3, 0)}


def kernel_order(t: Tensor) -> tuple[int, ...] | None:
    """The axis order a weight's buffer holds for the kernels (None: as trained)."""
    return KERNEL_ORDERS.get(len(t.shape)) if dtypes.is_float(t.dtype) else None


def inverse(order) -> list[int]:
    return [order.index(i) for i in range(len(order))]


class WasmRenderer(ClangRenderer):
    """tinygrad's C renderer for a wasm32 module: one thread (a page gets no shared memory
    without cross-origin isolation), and no host compiler (export/wasm.py compiles the C)."""

    has_threads = False
    global_max = None

    def __init__(self):
        CStyleLanguage.__init__(self, Target("CPU", "CLANG", "wasm32"))
        self.compiler = Compiler()  # returns the source: nothing is compiled for the host


# Measured in Node on the zoo's kernels (ms a forward pass, MLP 512-256 / CNN 16-32):
# tinygrad's CPU heuristic 0.30 / 0.63 (it unrolls the reduce into float4 loads, which clang
# sums horizontally every step); no opts 0.12 / 1.07; 4 outputs at a time with the reduce
# left to clang's loop vectorizer 0.064 / 0.39; plus 7 pixels of a row at a time in the convs
# 0.055 / 0.16 (larger tiles spill x86's 16 vector registers: 8 channels x 7 pixels 0.32,
# 4 x 14 0.37). Kernels without a reduce keep tinygrad's heuristic. In Chromium against ORT
# Web and the hand-written kernels these replaced: docs/PERFORMANCE.md.
OUTPUT_UPCASTS = (4, 2)
WHOLE_UPCAST = 16  # an output axis no upcast divides, at most this long, is upcast whole
ROW_UPCASTS = (7, 4, 2)


def cpu_opts(ast: UOp, renderer: WasmRenderer) -> tuple[Opt, ...] | None:
    """The optimisations for wasm's 128-bit SIMD of one kernel (None: tinygrad's heuristic)."""
    if ast.arg.opts_to_apply is not None:
        return None  # tinygrad chose this kernel's opts itself
    k = Scheduler(ast, renderer)
    k.convert_loop_to_global()
    shape, types = k.full_shape, k.axis_types
    outputs = [i for i, t in enumerate(types) if t is not AxisType.REDUCE]
    if not outputs or all(t is not AxisType.REDUCE for t in types):
        return None
    first = next((a for a in OUTPUT_UPCASTS if shape[outputs[0]] % a == 0), None)
    if not first and shape[outputs[0]] <= WHOLE_UPCAST:
        # the 11-logit head, all at once: 0.3 us; left as a plain loop clang unrolls it into
        # 10 kB of the CNN's 16 kB module, and tinygrad's float4 reduce takes 2 us
        first = shape[outputs[0]]
    if not first:
        return None
    opts = [Opt(OptOps.UPCAST, outputs[0], first)]
    if len(outputs) > 1 and (row := next((a for a in ROW_UPCASTS if shape[outputs[-1]] % a == 0), None)):
        opts.append(Opt(OptOps.UPCAST, outputs[-1], row))
    return tuple(opts)


def render_c(ast: UOp, renderer: WasmRenderer, where: str) -> tuple[str, str, list[int]]:
    """One scheduled kernel as C: (function name, source, indices of its buffer arguments)."""
    try:
        opts = cpu_opts(ast, renderer) if isinstance(ast.arg, KernelInfo) else None
    except Exception:  # a shape the choice above does not understand: tinygrad's heuristic
        opts = None
    if opts is not None:
        try:
            return _render_c(
                ast.replace(arg=dataclasses.replace(ast.arg, opts_to_apply=opts)), renderer, where
            )
        except (KernelOptError, ExportError):
            pass  # the shape refused them: tinygrad's heuristic
    return _render_c(ast, renderer, where)


def _render_c(ast: UOp, renderer: WasmRenderer, where: str) -> tuple[str, str, list[int]]:
    try:
        prg = to_program(ast, renderer)
    except Exception as exc:  # tinygrad asserts "failed to render Ops.X ...": the user gets one line
        text = str(exc).strip()
        op = re.search(r"failed to render (?:Ops\.)?(\w+)", text)
        if op:
            raise ExportError(
                f"{where}: tinygrad's C renderer cannot render the operation {op[1]} for the CPU fallback"
            ) from None
        first = text.splitlines()[0] if text else type(exc).__name__
        raise ExportError(f"{where}: tinygrad cannot render it as C for the CPU fallback ({first})") from None
    info = prg.arg
    if info.vars:
        raise ExportError(f"{where}: uses symbolic variables in C; export needs static shapes")
    source = next(s.arg for s in prg.src if s.op is Ops.SOURCE)
    return info.function_name, source, list(info.globals)


def _static(values, what: str, where: str) -> list[int]:
    if not all(isinstance(v, int) for v in values):
        raise ExportError(f"{where}: {what} {tuple(values)} is symbolic; export needs static shapes")
    return list(values)


def _describe_dtype(dt) -> str:
    if dt == dtypes.half:
        return "float16 (browsers without shader-f16 cannot run it)"
    if dt in WIDE_DTYPES:
        return f"{WIDE_DTYPES[dt]} (WGSL has no 64-bit types)"
    return f"{dt.name} (the runtime only binds float32 buffers)"


def trace(
    model,
    state: dict[str, Tensor],
    max_buffers: int,
    label: str,
    outputs: int = 10,
    c_renderer: WasmRenderer | None = None,
) -> Trace:
    """Kernels (in dispatch order) and buffers of one batch-1 forward pass of `model`, each
    rendered as WGSL and (by `c_renderer`, a WasmRenderer unless given) as C.

    `state` is the model's state dict; its tensors are moved to the NULL device here.
    """
    if not isinstance(Device["NULL"].renderer, WGSLRenderer):
        raise RuntimeError('tinygrad was imported without DEV="CPU;NULL:WGSL": set it before importing')
    names: dict[UOp, str] = {}
    orders: dict[str, list[int]] = {}
    for name, t in state.items():
        if order := kernel_order(t):
            # the kernels read a buffer of the stored layout; the model sees it permuted back
            stored = Tensor.empty(*(t.shape[i] for i in order), dtype=t.dtype, device="NULL").realize()
            t.replace(stored.permute(*inverse(order)))
            orders[name] = list(order)
        else:
            # a weight left unrealized would be folded into the kernels as constants: make it a real buffer
            t.replace(t.to("NULL")).realize()
        names[t.uop.base] = name
    x = Tensor.empty(*INPUT_SHAPE, device="NULL")
    # no memory planner: one buffer per intermediate rather than offsets into an arena
    with Context(NO_MEMORY_PLANNER=1, MAX_KERNEL_BUFFERS=max_buffers):
        out = model(x)
        _static(out.shape, "output shape", label)
        if tuple(out.shape) != (expected := (1, outputs)):
            raise ExportError(f"{label}: the model returns shape {tuple(out.shape)}, expected {expected}")
        linear, var_vals = out.linear_with_vars()
        if var_vals:
            raise ExportError(
                f"{label}: shapes depend on symbolic variables {sorted(var_vals)}; export needs static shapes"
            )
        scheduled = linear
        with wgsl_patch.per_thread_reductions():
            linear = compile_linear(linear)
    x_buf, out_buf = x.uop.base, out.uop.base
    c_renderer = c_renderer or WasmRenderer()

    buffers: dict[UOp, dict[str, Any]] = {}

    def buffer_of(b: UOp, where: str) -> dict[str, Any]:
        b = b.base
        if b in buffers:
            return buffers[b]
        (count,) = _static([math.prod(b.shape)], "buffer size", where)
        entry: dict[str, Any] = {"bytes": count * b.dtype.itemsize}
        if b is x_buf:
            entry |= {"id": "input", "kind": "input"}
        elif b is out_buf:
            entry |= {"id": "output", "kind": "output"}
        elif b in names:
            entry |= {"id": f"weight:{names[b]}", "kind": "weight", "name": names[b]}
        else:
            entry |= {"id": f"t{sum(e['kind'] == 'intermediate' for e in buffers.values())}"}
            entry["kind"] = "intermediate"
        entry["dtype"] = b.dtype
        buffers[b] = entry
        return entry

    kernels, c_kernels = [], []
    for call, planned in zip(linear.src, scheduled.src, strict=True):
        prg = call.src[0]
        if prg.op is not Ops.PROGRAM:
            raise ExportError(
                f"{label}: the schedule has a {prg.op.name} step, not a kernel (a tensor not on NULL?)"
            )
        info = prg.arg
        where = f"{label}: kernel {info.function_name}"
        if info.vars:
            raise ExportError(
                f"{where}: uses symbolic variables {[v.expr for v in info.vars]}; export needs static shapes"
            )
        global_size, local_size = info.launch_dims({})
        dispatch = _static(global_size, "dispatch size", where)
        workgroup = _static(local_size or (1, 1, 1), "workgroup size", where)
        source = next(s.arg for s in prg.src if s.op is Ops.SOURCE)
        if "enable f16" in source or any(u.dtype == dtypes.half for s in prg.src for u in s.toposort()):
            raise ExportError(f"{where}: computes in float16 (browsers without shader-f16 cannot run it)")
        if any(u.dtype in WIDE_DTYPES for s in prg.src for u in s.toposort()):
            raise ExportError(f"{where}: uses 64-bit values (WGSL has no 64-bit types)")
        args = get_call_arg_uops(call)
        bound = [buffer_of(args[i], where) for i in info.globals]
        writes = [i in info.outs for i in info.globals]
        if len(bound) > max_buffers:
            raise ExportError(
                f"{where}: binds {len(bound)} storage buffers, "
                f"more than export.max_storage_buffers = {max_buffers}"
            )
        bindings = []
        for slot, (buf, written) in enumerate(zip(bound, writes, strict=True), start=1):  # 0: INFINITY
            if buf["dtype"] != dtypes.float32:
                what = f"weight {buf['name']!r}" if buf["kind"] == "weight" else f"{buf['kind']} {buf['id']}"
                raise ExportError(f"{where}: binds {what} as {_describe_dtype(buf['dtype'])}")
            bindings.append(
                records.Binding(
                    binding=slot,
                    buffer=buf["id"],
                    kind=buf["kind"],
                    bytes=buf["bytes"],
                    access="write" if written else "read",
                    name=buf.get("name"),
                )
            )
        c_name, c_source, c_globals = render_c(planned.src[0], c_renderer, where)
        c_kernels.append(wasm.CKernel(c_name, c_source, [buffer_of(args[i], where)["id"] for i in c_globals]))
        kernels.append(
            records.Kernel(
                name=info.function_name,
                entry_point=info.function_name,
                dispatch=dispatch,
                workgroup_size=workgroup,
                bindings=bindings,
                source=source,
            )
        )
    wgsl_patch.check_barrier_free([k.source for k in kernels])
    listed = [records.Buffer(**{k: v for k, v in b.items() if k != "dtype"}) for b in buffers.values()]
    bound_weights = {b.name for b in listed if b.kind == "weight"}
    return Trace(
        kernels=kernels, buffers=listed, bound_weights=bound_weights, c_kernels=c_kernels, orders=orders
    )


def check_all_bound(state: dict[str, np.ndarray], bound: set[str], label: str) -> list[str]:
    """Every state-dict tensor must reach a kernel; returns the counters skipped on purpose."""
    skipped = [
        n for n, a in state.items() if n not in bound and n.endswith(SKIPPABLE_SUFFIX) and a.dtype == np.int64
    ]
    unbound = [n for n in state if n not in bound and n not in skipped]
    if unbound:
        raise ExportError(
            f"{label}: {len(unbound)} of {len(state)} state-dict tensors are bound by no kernel "
            f"({', '.join(unbound)}); they would be baked into the WGSL or missing"
        )
    return skipped


# --- weights and accuracy ---------------------------------------------------------------


def load_weights(path: Path, model, label: str) -> dict[str, np.ndarray]:
    """The saved state dict as numpy arrays, checked against the model's own names and shapes."""
    try:
        saved = load_file(str(path))
    except FileNotFoundError:
        raise ExportError(f"{path}: weights not found (run the train stage first)") from None
    except (SafetensorError, OSError) as exc:
        raise ExportError(f"{path}: unreadable safetensors file ({exc})") from None
    expected = {k: tuple(v.shape) for k, v in get_state_dict(model).items()}
    missing = sorted(set(expected) - set(saved))
    extra = sorted(set(saved) - set(expected))
    if missing or extra:
        raise ExportError(
            f"{path}: does not match {label} (missing: {missing or 'none'}; unexpected: {extra or 'none'})"
        )
    for k, shape in expected.items():
        if tuple(saved[k].shape) != shape:
            raise ExportError(f"{path}: {k} has shape {tuple(saved[k].shape)}, {label} expects {shape}")
    return {k: saved[k] for k in expected}


def set_weights(model, weights: dict[str, np.ndarray]) -> None:
    """`weights` into the model; state left out (what the forward pass never reads, like batch
    norm's step count, which the shipped forms skip) keeps its initial value."""
    for name, t in get_state_dict(model).items():
        if name in weights:
            # reshaped: tinygrad makes a 0-d array a shape-(1,) tensor
            t.replace(Tensor(np.ascontiguousarray(weights[name]), dtype=t.dtype).reshape(t.shape)).realize()


def predict(model, images: np.ndarray) -> np.ndarray:
    """Argmax digits (of the ten digit outputs) of (N, 28, 28) uint8 images, by tinygrad on the CPU."""
    out = np.empty(len(images), np.int64)
    for start in range(0, len(images), EVAL_BATCH):
        x = images[start : start + EVAL_BATCH].astype(np.float32)[:, None] / 255
        out[start : start + len(x)] = model(Tensor(x))[:, :10].argmax(axis=1).numpy()
    return out


@dataclasses.dataclass(frozen=True)
class Splits:
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray


def splits(cfg: Config) -> Splits:
    """The images of the training stage's own validation and test splits, as the models see them."""
    mnist = data.load(cfg.cache_dir())
    s = mnist_split(cfg.train)
    return Splits(
        val_x=preprocess.upright(mnist.train_x[s.val]),
        val_y=mnist.train_y[s.val],
        test_x=preprocess.upright(mnist.test_x[: s.n_test]),
        test_y=mnist.test_y[: s.n_test],
    )


def measure_forms(
    cfg: Config, name: str, weights: dict[str, np.ndarray], s: Splits
) -> list[tuple[records.Form, bytes]]:
    """Encode each configured form, expand it back and score those exact weights."""
    model = models.build(cfg.model(name), cfg.train.outputs)
    measured = []
    for form in cfg.export.forms:
        encoded = forms.encode(weights, form)
        blob = forms.to_bytes(encoded, {"model": name, "form": form})
        expanded = forms.expand(encoded)
        set_weights(model, expanded)
        val = float(np.mean(predict(model, s.val_x) == s.val_y))
        test = float(np.mean(predict(model, s.test_x) == s.test_y))
        error = max(float(np.abs(expanded[k] - weights[k].astype(np.float32)).max()) for k in weights)
        record = records.Form(
            form=form,
            file=layout.form_file(form),
            bytes=len(blob),
            sha256=hashlib.sha256(blob).hexdigest(),
            validation_accuracy=val,
            test_accuracy=test,
            max_abs_weight_error=error,
        )
        measured.append((record, blob))
        print(
            f"compile {name}: {form}: {len(blob):,} bytes, validation {val:.4f}, test {test:.4f}", flush=True
        )
    return measured


# --- the stage --------------------------------------------------------------------------


def decline_rule(cfg: Config, name: str) -> records.Decline | None:
    """The "not a digit" rule the train stage calibrated for these weights (metrics.json)."""
    if cfg.train.outputs == 10:
        return None
    path = layout.PROJECT.train_outputs(name).metrics
    metrics = records.read(records.Metrics, path, "run the train stage first")
    if metrics.decline is None:
        raise ExportError(f"{path}: no decline rule for a model with a 'not a digit' output; train it again")
    return metrics.decline


@dataclasses.dataclass(frozen=True)
class Compiled:
    """One model's graph as the browser runs it: kernels, CPU module and the weights they bind."""

    traced: Trace
    shipped: dict[str, np.ndarray]  # the weights the kernels bind, as trained
    skipped: list[str]  # state no kernel reads (check_all_bound)
    cpu: records.Cpu
    module: bytes  # cpu.wasm


def compile_model(cfg: Config, name: str, weights: dict[str, np.ndarray]) -> Compiled:
    """Trace `weights` in the [models.<name>] architecture and compile its CPU module."""
    label = f"model {name!r}"
    model = models.build(cfg.model(name), cfg.train.outputs)
    set_weights(model, weights)
    traced = trace(model, get_state_dict(model), cfg.export.max_storage_buffers, label, cfg.train.outputs)
    skipped = check_all_bound(weights, traced.bound_weights, label)
    cpu, module = wasm.build(traced.c_kernels, traced.buffers, label)
    shipped = {k: weights[k] for k in weights if k not in skipped}
    return Compiled(traced, shipped, skipped, cpu, module)


def manifest_of(
    cfg: Config,
    name: str,
    compiled: Compiled,
    shipped_forms: list[records.Form],
    default: str,
    evaluation: records.Evaluation,
    decline: records.Decline | None,
) -> records.Manifest:
    m = cfg.model(name)
    cls = models.REGISTRY[m.arch]
    traced = compiled.traced
    return records.Manifest(
        format=records.MANIFEST_FORMAT,
        name=name,
        model=records.ModelInfo(
            arch=m.arch,
            widths=list(m.widths),
            normalize=records.Normalize(mean=models.MNIST_MEAN, std=models.MNIST_STD),
            label=cls.label,
            description=cls.description,
            widths_mean=cls.widths_mean,
        ),
        input=records.TensorSpec(shape=list(INPUT_SHAPE), dtype="float32", buffer="input"),
        output=records.TensorSpec(shape=[1, cfg.train.outputs], dtype="float32", buffer="output"),
        buffers=traced.buffers,
        kernels=traced.kernels,
        weights={
            k: records.WeightSpec(shape=list(v.shape), dtype="float32", order=traced.orders.get(k))
            for k, v in compiled.shipped.items()
        },
        skipped_state=compiled.skipped,
        forms=shipped_forms,
        default_form=default,
        cpu=compiled.cpu,
        evaluation=evaluation,
        decline=decline,
    )


def run(cfg: Config, name: str) -> records.Manifest:
    """Write build/webgpu/<name>/ (weight files, then the manifest naming them); returns the manifest."""
    m = cfg.model(name)
    label = f"model {name!r}"
    path = layout.PROJECT.train_outputs(name).weights
    weights = load_weights(path, models.build(m, cfg.train.outputs), label)
    trainable = {k: v for k, v in weights.items() if v.dtype != np.int64 or not k.endswith(SKIPPABLE_SUFFIX)}
    for k, v in trainable.items():
        if v.dtype != np.float32:
            raise ExportError(f"{path}: {k} is {v.dtype}; the browser runtime takes float32 weights only")
    compiled = compile_model(cfg, name, weights)
    evaluated_on = splits(cfg)
    measured = measure_forms(cfg, name, compiled.shipped, evaluated_on)
    shipped_forms = [form for form, _ in measured]
    default = forms.choose_default(shipped_forms, cfg.export.tolerance_points)
    evaluation = records.Evaluation(
        validation_images=len(evaluated_on.val_x),
        test_images=len(evaluated_on.test_x),
        tolerance_points=cfg.export.tolerance_points,
        source_weights_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )
    manifest = manifest_of(cfg, name, compiled, shipped_forms, default, evaluation, decline_rule(cfg, name))
    cpu, traced = compiled.cpu, compiled.traced
    out = layout.PROJECT.webgpu_dir(name)
    for record, blob in measured:
        files.write_bytes(out / record.file, blob)
        faults.pause(f"compile:{name}")  # tests interrupt here: some forms replaced, no manifest yet
    files.write_bytes(out / cpu.file, compiled.module)
    records.write(layout.PROJECT.manifest(name), manifest)  # last: it names the files above
    sizes = ", ".join(f"{r.form} {r.bytes:,} B" for r in shipped_forms)
    print(
        f"compile {name}: {len(traced.kernels)} kernels, default form {default} ({sizes}), "
        f"CPU module {cpu.bytes:,} B -> {out}",
        flush=True,
    )
    return manifest
