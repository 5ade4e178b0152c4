"""Named points where a test can hold a stage and kill it: crash tests of real processes.

Set MNIST_WEBGPU_PAUSE_AT=<point>=<marker file> and the stage, on reaching <point>,
writes its pid to the marker file and sleeps, so a test can send SIGKILL or SIGINT at
exactly that moment instead of guessing with timers. Unset (always, outside tests),
`pause` costs one environment lookup.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_ENV = "MNIST_WEBGPU_PAUSE_AT"
HOLD_SECONDS = 600  # long enough for any test to act; bounded so a forgotten process ends


def pause(point: str) -> None:
    spec = os.environ.get(PAUSE_ENV, "")
    name, _, marker = spec.partition("=")
    if not marker or name != point:
        return
    Path(marker).write_text(str(os.getpid()))
    time.sleep(HOLD_SECONDS)
