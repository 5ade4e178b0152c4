"""What this machine offers the pipeline: the cores doit runs tasks on, the drawings stage
draws on, and the benches compare with."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_cores() -> int:
    """The cores this process may run on (its affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# the widest vector instructions a CPU kernel compiled for this machine (-march=native) can use
VECTOR_SETS = (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("avx", "AVX"), ("asimd", "NEON"), ("sse2", "SSE2"))


def processor(cpuinfo: str | None = None) -> str:
    """The processor as the benches report it: its model name and widest vector set, for
    example 'AMD EPYC (AVX2)'. Kernel speed depends on both, so every figure names them."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    name = fields.get("model name") or platform.processor() or platform.machine() or "unknown processor"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    vectors = next((label for flag, label in VECTOR_SETS if flag in flags), "no vector set listed")
    return f"{name} ({vectors})"
