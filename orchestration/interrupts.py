"""Stopping a command: SIGTERM ends its run as failed within seconds, and runs whose process
died without a word (SIGKILL, a power cut) are marked failed by the next command.

Handled like Ctrl-C, SIGTERM makes Dagster record the run as failed; DuckDB, which checks
for pending signals while it executes, cancels the query under way; every `with` block
(transactions, the workspace lock) unwinds on the way out. Nothing half-written is kept:
each stage writes in one transaction.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

PID_TAG = "meterbook/pid"
HOST_TAG = "meterbook/host"


class RunInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the command; the message says what became of its run (marked
    failed, or finished before the signal could stop it)."""


# Python runs a signal handler between two bytecodes of the main thread, wherever it is. An
# exception raised there while a garbage-collection callback runs (SQLAlchemy's, under
# Dagster's event log) is printed and dropped, and the run goes on to the end, as seen in
# one test run in three. So a watcher thread learns of every signal from the wakeup fd and
# signals again, every REPEAT_SECONDS, until the command has stopped. No cap: on a loaded
# machine five repeats in a row were all dropped and the close ran to its end (a flaky e2e
# test); a command that takes the interrupt calls `stopped()`, one that exits ends the thread.
REPEAT_SECONDS = 3.0
_watching = threading.Event()
_stop_requested = threading.Event()
_stopped = threading.Event()


def sigterm_as_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does, and is repeated until it is taken.

    Dagster maps SIGTERM to its SIGINT handling while it executes a run; this gives the rest
    of the command the same. Call from the main thread, before any work; once is enough."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if _watching.is_set():
        return
    _watching.set()
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_end,), name="meterbook-signals", daemon=True).start()


@contextmanager
def sigterm_kept() -> Iterator[None]:
    """Puts SIGTERM's handler back as it was once the block ends.

    Dagster, leaving a run, restores SIGINT's handler and gives SIGTERM the same one. A process
    started with SIGINT ignored (a background job of a non-interactive shell, `nohup`) would
    then ignore SIGTERM too: `meterbook follow`, between two runs, could no longer be stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handler = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, handler)


def stopped() -> None:
    """The command has taken the interrupt (it is unwinding): no more repeats."""
    _stopped.set()


def stop_requested() -> bool:
    return _stop_requested.is_set()


def _watch(read_end: int) -> None:
    while not _stop_requested.is_set():
        received = os.read(read_end, 64)
        if any(sig in received for sig in (signal.SIGTERM, signal.SIGINT)):
            _stop_requested.set()
    while not _stopped.wait(REPEAT_SECONDS):
        os.kill(os.getpid(), _repeated_signal())


def _repeated_signal() -> int:
    """SIGINT, which a Dagster run takes as its interrupt; SIGTERM when SIGINT is ignored (a
    process started by `nohup` or as a background job of a script), where every SIGINT
    repeat would be dropped."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        return signal.SIGTERM
    return signal.SIGINT


def run_tags() -> dict[str, str]:
    """Tags naming the process that executes a run, so a later command can tell it died."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def fail_orphaned_runs(instance) -> list[str]:
    """Mark failed the runs of this host still STARTED whose process no longer exists."""
    from dagster import DagsterRunStatus, RunsFilter  # noqa: PLC0415

    unfinished = [DagsterRunStatus.STARTED, DagsterRunStatus.STARTING]
    runs = instance.get_runs(
        filters=RunsFilter(statuses=unfinished, tags={HOST_TAG: socket.gethostname()})
    )
    failed = []
    for run in runs:
        pid = run.tags.get(PID_TAG, "")
        if pid.isdigit() and not _alive(int(pid)):
            instance.report_run_failed(
                run, f"process {pid} that executed this run ended before the run finished"
            )
            failed.append(run.run_id)
    return failed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
