"""A one-line progress bar for training on a terminal; plain periodic lines otherwise.

Hand-written rather than tqdm: it needs four fields and one redraw rule, and logs
captured by doit or CI must stay readable (no carriage returns when not a terminal).
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 24
REDRAW_SECONDS = 0.2


def duration(seconds: float | None) -> str:
    """A span of time as people read it: '42.0 s', '3 min 07 s', '1 h 05 min' (the one formatter)."""
    if seconds is None:
        return "n/a"
    s = max(float(seconds), 0.0)
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


# The first steps trace and compile the jitted step (TinyJit: a plain call, then the capture);
# counting them in the rate made the first ETA about 2.5x too long.
WARMUP_STEPS = 3


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None, clock=time.monotonic):
        self.label, self.total = label, total
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.clock = clock
        self.start = self.last_draw = clock()
        self.done, self.loss, self.val_accuracy, self.pen_accuracy = 0, None, None, None
        self.warm: tuple[int, float] | None = None  # (steps, time) when warm-up ended

    def _rate(self) -> float:
        """Steps per second since warm-up ended (0 until a step after it is done: ETA '?')."""
        if self.warm is None or self.done <= self.warm[0]:
            return 0.0
        return (self.done - self.warm[0]) / max(self.clock() - self.warm[1], 1e-9)

    def _fields(self) -> str:
        rate = self._rate()
        loss = f"loss {self.loss:.4f}" if self.loss is not None else "loss -"
        val = f"val {self.val_accuracy:.2%}" if self.val_accuracy is not None else "val -"
        if self.pen_accuracy is not None:
            val += f"  pen {self.pen_accuracy:.2%}"
        eta = duration((self.total - self.done) / rate) if rate > 0 else "?"
        return f"{self.done}/{self.total}  {loss}  {val}  {rate:.2f} steps/s  ETA {eta}"

    def step(self, done: int) -> None:
        self.done = done
        now = self.clock()
        if self.warm is None and done >= min(WARMUP_STEPS, self.total):
            self.warm = (done, now)
        if self.tty and (now - self.last_draw >= REDRAW_SECONDS or done == self.total):
            self.last_draw = now
            filled = WIDTH * done // max(self.total, 1)
            bar = "#" * filled + "." * (WIDTH - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self._fields()}\x1b[K")
            self.stream.flush()

    def report(self, done: int, loss: float, val_accuracy: float, pen_accuracy: float | None = None) -> None:
        """An evaluation point: new figures for the bar, or one line when not on a terminal;
        `pen_accuracy`: the validation writers' pen digits."""
        self.loss, self.val_accuracy, self.pen_accuracy = loss, val_accuracy, pen_accuracy
        if self.tty:
            self.last_draw = 0.0
            self.step(done)
        else:
            self.done = done
            print(f"{self.label}: step {self._fields()}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
