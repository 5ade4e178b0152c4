"""A smallest CPU module, by hand: what site_src/cpu.js instantiates (memory, net, arena), for
the kits' fake models, and its manifest record. The real ones come from export/wasm.py."""

from __future__ import annotations

import hashlib

from mnist_webgpu.core import records
from mnist_webgpu.core.layout import CPU_MODULE
from mnist_webgpu.export import wasm


def _section(kind: int, body: bytes) -> bytes:
    return bytes([kind, len(body)]) + body


def _name(text: str) -> bytes:
    return bytes([len(text)]) + text.encode()


# net() does nothing; arena is address 1024 of one 64 KiB page
MODULE = (
    wasm.WASM_MAGIC
    + _section(1, bytes([1, 0x60, 0, 0]))  # type: () -> ()
    + _section(3, bytes([1, 0]))  # function 0 of type 0
    + _section(5, bytes([1, 0, 1]))  # memory: min 1 page
    + _section(6, bytes([1, 0x7F, 0, 0x41, 0x80, 0x08, 0x0B]))  # global i32 const 1024
    + _section(
        7,
        bytes([3])
        + _name("memory")
        + bytes([2, 0])
        + _name("net")
        + bytes([0, 0])
        + _name("arena")
        + bytes([3, 0]),
    )
    + _section(10, bytes([1, 2, 0, 0x0B]))  # code: no locals, end
)


def importing(module: str, function: str) -> bytes:
    """A module that imports `module.function` (a () -> () function) and exports only its memory."""
    return (
        wasm.WASM_MAGIC
        + _section(1, bytes([1, 0x60, 0, 0]))  # type: () -> ()
        + _section(2, bytes([1]) + _name(module) + _name(function) + bytes([0, 0]))  # import of type 0
        + _section(5, bytes([1, 0, 1]))  # memory: min 1 page
        + _section(7, bytes([1]) + _name("memory") + bytes([2, 0]))
    )


def cpu_record(buffers: list[records.Buffer] = (), blob: bytes = MODULE) -> records.Cpu:
    offsets, size = wasm.arena(list(buffers))
    return records.Cpu(
        file=CPU_MODULE,
        bytes=len(blob),
        sha256=hashlib.sha256(blob).hexdigest(),
        arena_bytes=size,
        offsets=offsets,
        kernels=[],
        exports=list(wasm.EXPORTS),
    )
