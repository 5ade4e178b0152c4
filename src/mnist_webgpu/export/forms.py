"""Weight forms sent to the browser: f32, f16 and int8 with per-row scales.

`encode` gives the tensors written to `weights.<form>.safetensors`; `expand` turns them
back into the float32 arrays the browser computes with. The browser's expansion
(site_src/safetensors.js) does the same arithmetic: f16 -> f32 is exact, and
int8 * f32 scale is one correctly rounded f32 product in both numpy and JS, so the
accuracy measured here is the accuracy of the weights the page actually uses.
"""

from __future__ import annotations

import json
import struct

import numpy as np

from mnist_webgpu.core.records import Form

FORMS = ("f32", "f16", "int8")
SCALE_SUFFIX = ".scale"


def _int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 with one f32 scale per output row (axis 0), so a small row keeps its precision."""
    rows = w.reshape(w.shape[0], -1)
    peak = np.abs(rows).max(axis=1)
    scale = np.where(peak > 0, peak / 127, 1).astype(np.float32)
    q = np.clip(np.round(rows / scale[:, None]), -127, 127).astype(np.int8)
    return q.reshape(w.shape), scale


def encode(weights: dict[str, np.ndarray], form: str) -> dict[str, np.ndarray]:
    """The tensors of one form. Vectors (biases) stay f32 in int8: a scale per element saves nothing."""
    out: dict[str, np.ndarray] = {}
    for name, w in weights.items():
        w = np.ascontiguousarray(w, np.float32)
        if form == "f32":
            out[name] = w
        elif form == "f16":
            out[name] = w.astype(np.float16)
        elif form == "int8" and w.ndim >= 2:
            out[name], out[name + SCALE_SUFFIX] = _int8_rows(w)
        elif form == "int8":
            out[name] = w
        else:
            raise ValueError(f"unknown weight form {form!r}")
    return out


def expand(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """float32 weights from one form's tensors, exactly as the browser expands them."""
    out: dict[str, np.ndarray] = {}
    for name, t in tensors.items():
        if name.endswith(SCALE_SUFFIX) and name[: -len(SCALE_SUFFIX)] in tensors:
            continue
        if t.dtype == np.int8:
            scale = tensors[name + SCALE_SUFFIX].astype(np.float32)
            rows = t.reshape(t.shape[0], -1).astype(np.float32) * scale[:, None]
            out[name] = rows.reshape(t.shape)
        else:
            out[name] = t.astype(np.float32)
    return out


SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "int8": "I8", "int64": "I64", "int32": "I32"}


def to_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    """A safetensors file whose bytes depend only on its contents.

    safetensors' own writer keeps the metadata in a Rust HashMap, so its order (and the
    file's digest) changed from one process to the next. Written here instead, as that
    writer lays it out (tensors by alignment, then name; header padded to 8 bytes), with
    the metadata sorted.
    """
    arrays = {
        k: np.ascontiguousarray(v, dtype=np.asarray(v).dtype.newbyteorder("<")) for k, v in tensors.items()
    }
    header: dict = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    chunks, offset = [], 0
    for name in sorted(arrays, key=lambda k: (-arrays[k].dtype.itemsize, k)):
        a = arrays[name]
        raw = a.tobytes()
        header[name] = {
            "dtype": SAFETENSORS_DTYPES[a.dtype.name],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def choose_default(measured: list[Form], tolerance_points: float) -> str:
    """The smallest form whose validation accuracy is within the tolerance of f32's."""
    f32 = next(m for m in measured if m.form == "f32")
    floor = f32.validation_accuracy - tolerance_points / 100 - 1e-12
    ok = [m for m in measured if m.validation_accuracy >= floor]
    return min(ok, key=lambda m: m.bytes).form
