"""What this machine offers the pipeline: the cores doit runs tasks on, the drawings stage
draws on, and the benches compare with."""

from __future__ import annotations

import os


def cpu_cores() -> int:
    """The cores this process may run on (its affinity where the system has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
