"""The JSON files stages hand each other, as typed records that writers and readers share.

    Metrics, Misclassified   build/models/<model>/metrics.json, misclassified.json   (train)
    Manifest                 build/webgpu/<model>/manifest.json                      (compile)
    TrialResult              rows of sweeps/results.json                             (sweep)

A writer builds the record and `write`s it (atomically); a reader `read`s it back and
gets the same record or one SchemaError line naming the file and the key that does not
match: no reader guesses at a missing key. Free of tinygrad.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mnist_webgpu.core import files, rules
from mnist_webgpu.core.config import settings_hash
from mnist_webgpu.core.errors import PipelineError
from mnist_webgpu.core.rules import FRACTION, POSITIVE, Kind, Reader

T = TypeVar("T")


class SchemaError(PipelineError):
    """A file does not hold the record its readers expect; the message names file and key."""


def ruled(kind: Kind) -> Any:
    """A record field whose value (each item, for a list) must be of `kind`, as config keys are:
    the page computes with these numbers, so a reader refuses what would break it."""
    return dataclasses.field(metadata={"kind": kind})


@dataclass(frozen=True)
class Curves:
    step: list[int]
    train_loss: list[float]
    val_accuracy: list[float]
    pen_val_accuracy: list[float] = dataclasses.field(default_factory=list)  # the validation writers'


@dataclass(frozen=True)
class SplitSizes:
    train: int
    val: int
    test: int | None = None  # sweeps never read the test set


@dataclass(frozen=True)
class Decline:
    """The page's "not a digit" rule: softmax(logits / temperature); decline when the last
    output's probability exceeds threshold (set on people's validation digits, mnist_webgpu.train.verdict)."""

    temperature: float = ruled(POSITIVE)  # 0 or NaN: every probability NaN
    threshold: float = ruled(FRACTION)  # below 0: every drawing declined


@dataclass(frozen=True)
class Drawn:
    """How a model reads drawings made as on the page (mnist_webgpu.drawings), answered as the
    page answers: a declined drawing names no digit."""

    digits: int
    accuracy: float  # drawn digits read as their own digit
    declined: float  # drawn digits declined
    mnist_declined: float  # the split's MNIST digits declined
    nondigits: int
    nondigits_declined: float
    nondigits_declined_by_kind: dict[str, float]


@dataclass(frozen=True)
class Handwriting:
    """How a model reads real people's pen digits (mnist_webgpu.data.pendigits) by writers it never
    trained on, replayed as written and answered as the page answers."""

    digits: int
    writers: int
    accuracy: float  # of all their digits
    declined: float  # answered "?"
    worst_writer: int
    worst_accuracy: float
    by_writer: dict[str, float]  # writer id -> accuracy
    by_digit: list[float]  # digit 0-9 -> accuracy


@dataclass(frozen=True)
class Metrics:
    model: str
    arch: str
    test_accuracy: float
    val_accuracy: float
    best_step: int
    per_class_accuracy: list[float | None]  # None: a class with no test image (a test_limit slice)
    confusion_matrix: list[list[int]]
    curves: Curves
    params: int
    weight_bytes: int
    train_seconds: float
    steps_per_second: float
    steps: int
    split: SplitSizes
    device: str
    tinygrad_version: str
    config: dict[str, Any]  # the training settings, as hashed into config_hash
    config_hash: str
    created: str
    decline: Decline | None = None  # None: ten outputs, no "not a digit" answer
    drawn_val: Drawn | None = None  # what set the threshold
    drawn_test: Drawn | None = None  # the report: test digits drawn, scored once
    pen_val: Handwriting | None = None  # the validation writers: the headline handwriting figure

    def trained_with(self, settings: dict[str, Any]) -> bool:
        """Whether these weights were trained with `settings` (a model's training settings now)."""
        return self.config_hash == settings_hash(settings)


@dataclass(frozen=True)
class Misclassified:
    indices: list[int]  # into the test set
    labels: list[int]
    predictions: list[int]


@dataclass(frozen=True)
class Normalize:
    mean: float
    std: float


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    widths: list[int]
    normalize: Normalize
    # how the site presents it, from the model's class (models/zoo.py)
    label: str
    description: str
    widths_mean: str


@dataclass(frozen=True)
class TensorSpec:
    shape: list[int]
    dtype: str
    buffer: str


@dataclass(frozen=True)
class Buffer:
    id: str
    kind: str  # input, output, weight or intermediate
    bytes: int
    name: str | None = None  # the state-dict name of a weight


@dataclass(frozen=True)
class Binding:
    binding: int
    buffer: str
    kind: str
    bytes: int
    access: str  # read or write
    name: str | None = None


@dataclass(frozen=True)
class Kernel:
    name: str
    entry_point: str
    dispatch: list[int] = ruled(POSITIVE)  # workgroups per dimension: 0 runs nothing
    workgroup_size: list[int] = ruled(POSITIVE)
    bindings: list[Binding]
    source: str  # WGSL


@dataclass(frozen=True)
class CpuKernel:
    name: str  # the C function, unique in the module (tinygrad may give two kernels one name)
    buffers: list[str]  # Buffer ids, in the order the function takes them


@dataclass(frozen=True)
class Cpu:
    """The CPU fallback: one WebAssembly module compiled from tinygrad's C rendering of the same
    kernels (mnist_webgpu.export.wasm). Every buffer sits at a fixed place in the module's own
    `arena`: the page writes the weights there once, then per inference the input, calls `net`
    and reads the output; nothing else crosses."""

    file: str  # beside the manifest
    bytes: int
    sha256: str
    arena_bytes: int
    offsets: dict[str, int]  # Buffer id -> byte offset from the exported `arena` address (16-aligned)
    kernels: list[CpuKernel]  # in the order net() calls them: the schedule's
    exports: list[str]  # what the module exports (and all it exports); it imports nothing


@dataclass(frozen=True)
class WeightSpec:
    shape: list[int]  # as trained and as the weight files hold it
    dtype: str
    # the kernels read the tensor with its axes in this order (file tensor.transpose(order)):
    # the exporter's choice of layout (export.webgpu.KERNEL_ORDERS); None: as the file holds it
    order: list[int] | None = None


@dataclass(frozen=True)
class Form:
    form: str
    file: str
    bytes: int
    sha256: str
    validation_accuracy: float
    test_accuracy: float
    max_abs_weight_error: float


@dataclass(frozen=True)
class Evaluation:
    validation_images: int
    test_images: int
    tolerance_points: float
    source_weights_sha256: str


# site_src/runtime.js reads only this format. 2: the cpu record (a generated module);
# 3: weights[name].order (the exporter's kernel layout)
MANIFEST_FORMAT = 3


@dataclass(frozen=True)
class Manifest:
    format: int  # MANIFEST_FORMAT
    name: str
    model: ModelInfo
    input: TensorSpec
    output: TensorSpec
    buffers: list[Buffer]
    kernels: list[Kernel]
    weights: dict[str, WeightSpec]
    skipped_state: list[str]
    forms: list[Form]
    default_form: str
    evaluation: Evaluation
    cpu: Cpu
    decline: Decline | None = None  # None: ten outputs, the page declines by size only

    def form(self, name: str) -> Form:
        return next(f for f in self.forms if f.form == name)

    def compiled_from(self, weights: Path) -> bool:
        """Whether the trained weights file `weights` is the one this manifest was compiled from."""
        blob = weights.read_bytes() if weights.is_file() else b""
        return hashlib.sha256(blob).hexdigest() == self.evaluation.source_weights_sha256

    def file_problems(self, manifest: Path) -> list[str]:
        """What differs between the files beside `manifest` (weight forms, CPU module) and what it
        records of them (missing, another size, another digest: a mixed or interrupted build)."""
        problems = []
        module = manifest.parent / self.cpu.file
        if not module.is_file():
            problems.append(f"{manifest}: CPU module {self.cpu.file} is missing")
        else:
            blob = module.read_bytes()
            if len(blob) != self.cpu.bytes or hashlib.sha256(blob).hexdigest() != self.cpu.sha256:
                problems.append(f"{module}: not the CPU module the manifest records (a mixed build?)")
        for form in self.forms:
            path = manifest.parent / form.file
            if not path.is_file():
                problems.append(f"{manifest}: weight file {form.file} is missing")
                continue
            blob = path.read_bytes()
            if len(blob) != form.bytes:
                problems.append(f"{path}: {len(blob)} bytes, manifest says {form.bytes}")
            elif hashlib.sha256(blob).hexdigest() != form.sha256:
                problems.append(f"{path}: its SHA-256 is not the one the manifest records (a mixed build?)")
        return problems


@dataclass(frozen=True)
class TrialResult:
    """One finished Optuna trial of the sweep: a row of sweeps/results.json (sweep.row writes it)."""

    model: str
    trial: str  # <model>-<hash of its training settings>
    study: str
    number: int
    state: str  # complete, pruned or failed
    where: str
    overrides: dict[str, Any]
    sampled: dict[str, Any]  # Optuna's parameters
    hyperparameters: dict[str, Any]  # read back from the trainer; a pruned trial: as asked for
    val_accuracy: float  # a pruned trial: its best so far
    best_step: int
    steps_done: int
    train_seconds: float
    steps_per_second: float
    split: SplitSizes
    device: str
    tinygrad_version: str
    date: str
    settings_hash: str
    worker: str
    params: int | None = None  # unknown for a trial pruned before it finished
    error: str | None = None
    current: bool | None = None


@dataclass(frozen=True)
class SweepResults:
    """sweeps/results.json: the committed record of every trial ever exported, current or not."""

    format: int
    rows: list[TrialResult]


# --- reading and writing ------------------------------------------------------------------


def _json_value(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    return json.dumps(value)


def parse(cls: type[T], obj: Any, where: str) -> T:
    """`obj` (JSON data) as a `cls` record; errors read '<where>: <key>: expected ..., got ...'."""
    reader = Reader(SchemaError, where, "an object", _json_value, finite=False, factories=False)
    return rules.parse(cls, obj, reader)


def read(cls: type[T], path: Path, hint: str = "") -> T:
    """The record in `path`; one SchemaError line (with `hint`, how to make it) if it is missing or off."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"{path}: missing" + (f" ({hint})" if hint else "")) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SchemaError(f"{path}: not a readable JSON file ({exc})") from None
    return parse(cls, obj, str(path))


def plain(record: Any) -> Any:
    """A record as JSON data; optional keys left at None are omitted."""
    if dataclasses.is_dataclass(record):
        out = {}
        for f in dataclasses.fields(record):
            value = getattr(record, f.name)
            if value is None and f.default is None:
                continue
            out[f.name] = plain(value)
        return out
    if isinstance(record, list | tuple):
        return [plain(v) for v in record]
    if isinstance(record, dict):
        return {k: plain(v) for k, v in record.items()}
    return record


def write(path: Path, record: Any) -> None:
    files.write_json(path, plain(record))
