"""The progress line's ETA: right once warm-up (tracing and compiling the jitted step) is over."""

from __future__ import annotations

import io
import re

from mnist_webgpu.core.progress import Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def eta_seconds(line: str) -> float:
    match = re.search(r"ETA (?:(\d+) min )?([\d.]+) s", line)
    assert match, line
    return 60 * int(match.group(1) or 0) + float(match.group(2))


def test_first_eta_after_warm_up_ignores_the_compile_time():
    """3 warm-up steps of 10 s each (the jit compiling), then 0.1 s a step: 900 steps are 90 s away."""
    clock, out = Clock(), io.StringIO()
    bar = Progress("mlp", 1000, stream=out, clock=clock)
    for step in range(1, 4):
        clock.now += 10
        bar.step(step)
    bar.report(3, 2.3, 0.1)
    assert "ETA ?" in out.getvalue()  # no honest rate yet
    for step in range(4, 101):
        clock.now += 0.1
        bar.step(step)
    bar.report(100, 0.5, 0.9)
    eta = eta_seconds(out.getvalue().splitlines()[-1])
    assert 89 <= eta <= 91, eta  # counting the warm-up it read ~380 s
    assert "10.00 steps/s" in out.getvalue().splitlines()[-1]


def test_a_run_shorter_than_warm_up_still_finishes_cleanly():
    clock, out = Clock(), io.StringIO()
    bar = Progress("tiny", 2, stream=out, clock=clock)
    for step in (1, 2):
        clock.now += 1
        bar.step(step)
    bar.report(2, 1.0, 0.5)
    bar.close()
    assert "2/2" in out.getvalue() and "ETA" in out.getvalue()
