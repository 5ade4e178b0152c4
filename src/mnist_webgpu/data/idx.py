"""Read and write the IDX format MNIST ships in (uint8 tensors only)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from mnist_webgpu.core.errors import PipelineError

UBYTE = 0x08


class IDXError(PipelineError, ValueError):
    """A malformed IDX file; the message names the file and the problem."""


def parse(blob: bytes | memoryview, name: str = "<bytes>") -> np.ndarray:
    """Validate an IDX blob and return its uint8 array as a view on `blob` (no copy)."""
    blob = memoryview(blob)
    if len(blob) < 4:
        raise IDXError(f"{name}: too short for an IDX header ({len(blob)} bytes)")
    zero, dtype, ndim = struct.unpack_from(">HBB", blob, 0)
    if zero != 0:
        raise IDXError(f"{name}: bad magic number (first two bytes must be zero)")
    if dtype != UBYTE:
        raise IDXError(f"{name}: unsupported element type 0x{dtype:02x} (expected 0x08, unsigned byte)")
    if not 1 <= ndim <= 4:
        raise IDXError(f"{name}: unsupported dimension count {ndim} (expected 1 to 4)")
    header = 4 + 4 * ndim
    if len(blob) < header:
        raise IDXError(f"{name}: truncated header ({len(blob)} of {header} bytes)")
    shape = struct.unpack_from(f">{ndim}I", blob, 4)
    if any(d == 0 for d in shape):
        raise IDXError(f"{name}: a zero-sized dimension in shape {shape}")
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(blob) != expected:
        raise IDXError(f"{name}: length {len(blob)} bytes does not match shape {shape} ({expected} bytes)")
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape)


def read(path: Path) -> np.ndarray:
    """Read into a writable buffer: device copies (e.g. tinygrad's CUDA) refuse read-only memory."""
    path = Path(path)
    with open(path, "rb") as f:
        blob = bytearray(os.fstat(f.fileno()).st_size)
        f.readinto(blob)
    return parse(blob, str(path))


def encode(array: np.ndarray) -> bytes:
    if array.dtype != np.uint8:
        raise ValueError(f"IDX encoding supports uint8 only, got {array.dtype}")
    header = struct.pack(f">HBB{array.ndim}I", 0, UBYTE, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()
