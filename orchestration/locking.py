"""One writer per workspace: an advisory file lock taken before the warehouse is opened.

DuckDB itself refuses a second read-write process, but with an unhelpful error and no waiting.
A close and a finalize of the same workspace started together must not interleave, so each
takes `workspace_lock(home, "warehouse", ...)` first: the second waits, then fails with one
clear line. The lock is `fcntl.flock` on a file in the workspace, so the kernel drops it when
the holder dies (a killed close never leaves a stale lock behind).
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCKS_DIR = "locks"
# the lock every process that opens the warehouse takes (DuckDB admits one process per file)
WRITE_LOCK = "warehouse"
LOCK_WAIT_SECONDS = float(os.environ.get("METERBOOK_LOCK_WAIT_SECONDS", "600"))
_POLL_SECONDS = 0.05
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class WorkspaceLocked(RuntimeError):
    """Another process holds the lock; the message is one line, fit for a CLI's stderr."""


def lock_path(ws_home: Path, name: str) -> Path:
    if not _NAME.match(name):
        raise ValueError(f"lock name {name!r} must match {_NAME.pattern}")
    return Path(ws_home) / LOCKS_DIR / f"{name}.lock"


@contextmanager
def workspace_lock(ws_home: Path, name: str, wait_seconds: float) -> Iterator[Path]:
    """Hold the exclusive lock `name` of the workspace for the duration of the block.

    Waits up to `wait_seconds` (0: fail at once) for another holder to finish, then raises
    WorkspaceLocked naming the holder's pid when it is known.
    """
    path = lock_path(ws_home, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, name, wait_seconds)
        try:
            _write_holder(fd)
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, name: str, wait_seconds: float) -> None:
    deadline = time.monotonic() + max(0.0, wait_seconds)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise WorkspaceLocked(_busy_message(fd, path, name, wait_seconds)) from None
            time.sleep(_POLL_SECONDS)


def _write_holder(fd: int) -> None:
    # The pid is only for the waiting process's message; the lock itself is the flock.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)


def _busy_message(fd: int, path: Path, name: str, wait_seconds: float) -> str:
    holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
    by = f" by process {holder}" if holder.isdigit() else ""
    return (
        f"workspace is busy: lock '{name}' ({path}) is held{by}; "
        f"gave up after waiting {wait_seconds:g}s"
    )
