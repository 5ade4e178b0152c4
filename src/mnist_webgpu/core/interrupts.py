"""Ctrl-C anywhere in the pipeline: one line, exit status 130, never a traceback.

A terminal's Ctrl-C reaches every process of the foreground group at once: doit, doit's
worker processes, the stage each runs, a sweep's workers. Each stage stops where it is (its
`finally` blocks remove what it staged, and dist/ is only ever replaced whole, by verify),
and only the process the user started says so:

    python -m mnist_webgpu <stage>   main() ends with `report()`
    doit <task>                      dodo.py calls `install_for_doit()`; the processes it starts
                                     inherit QUIET_ENV and stay silent
"""

from __future__ import annotations

import os
import signal
import sys

LINE = "interrupted; nothing was published"
STATUS = 130  # 128 + SIGINT: what a shell reports for a process stopped by Ctrl-C
QUIET_ENV = "MNIST_WEBGPU_QUIET_INTERRUPT"  # set: the process that started this one says the line


def report() -> int:
    """A stage was interrupted: say so (unless its parent will) and give the exit status."""
    if not os.environ.get(QUIET_ENV):
        print(LINE, file=sys.stderr, flush=True)
    return STATUS


def quiet(env: dict[str, str]) -> dict[str, str]:
    """`env` for a child process whose interrupt this process reports."""
    return {**env, QUIET_ENV: "1"}


def install_for_doit() -> None:
    """In doit's process: an interrupt ends doit with the line instead of its traceback (and
    those of its forked workers), after doit's own cleanup (it saves its dependency file)."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # SIGINT ignored (a background job) or handled by whoever embeds doit: leave it
    os.environ[QUIET_ENV] = "1"  # every stage doit starts inherits it
    main = os.getpid()
    previous = sys.excepthook

    def on_sigint(signum, frame):
        if os.getpid() != main:  # a worker process doit forked: the main one reports
            os._exit(STATUS)
        raise KeyboardInterrupt

    def hook(kind, value, tb):
        if not issubclass(kind, KeyboardInterrupt):
            return previous(kind, value, tb)
        print(LINE, file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(STATUS)  # left to itself, Python re-raises SIGINT: a signal, not this status

    signal.signal(signal.SIGINT, on_sigint)
    sys.excepthook = hook
