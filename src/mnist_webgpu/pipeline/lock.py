"""One build at a time where it matters: the stages that write build/site, dist/ and the
published branch hold an exclusive flock on build/build.lock.

Two `doit build`s started together otherwise interleave their renders and swaps (dist/
was left partial, build/site broken). The kernel drops the lock when its holder exits,
however it exits, so a killed build never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from mnist_webgpu.core.errors import PipelineError

LOCK_NAME = "build.lock"
WAIT_SECONDS = 1800  # a site and verify take seconds: a holder this long is stuck, not busy


class BuildLocked(PipelineError):
    """Another build holds the lock; the message names its pid."""


def _holder(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def exclusive(build_dir: Path, *, wait: bool, what: str, timeout: float = WAIT_SECONDS) -> Iterator[None]:
    """Hold build/build.lock for the block: wait for another holder (saying so once) or refuse."""
    build_dir = Path(build_dir)
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(build_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise PipelineError(f"{build_dir / LOCK_NAME}: cannot open the build lock ({exc.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _holder(fd)
            if not wait:
                raise BuildLocked(
                    f"another build is running (pid {pid}); {what} needs it done first: run again then"
                ) from None
            print(f"another build is running (pid {pid}); {what} waits for it", file=sys.stderr, flush=True)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise BuildLocked(
                            f"another build is running (pid {_holder(fd)}) and held the lock over "
                            f"{timeout:g} s; {what} gave up"
                        ) from None
                    time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_if_free(build_dir: Path) -> None:
    """Delete the lock file unless a build holds it (`doit clean`): removing a held lock would
    let the next build take a fresh one beside the running build."""
    path = Path(build_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
    except OSError:
        pass
    finally:
        os.close(fd)
