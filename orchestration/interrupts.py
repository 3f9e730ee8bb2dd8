"""Stopping a command: SIGTERM ends its run as failed within seconds, and runs whose process
died without a word (SIGKILL, a power cut) are marked failed by the next command.

Python's default for SIGTERM ends the process at once: the Dagster run it was executing
stays STARTED in the UI for ever. Handled like Ctrl-C instead, Dagster records the run as
failed, and DuckDB, which checks for pending signals while it executes, cancels the query
under way; every `with` block (transactions, the workspace lock) unwinds on the way out.
"""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager

PID_TAG = "meterbook/pid"
HOST_TAG = "meterbook/host"


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: stop what runs, as Ctrl-C would."""


_received: list[int] = []


def terminated() -> bool:
    """Whether this process was asked to stop (SIGTERM) since `sigterm_stops_runs` began."""
    return bool(_received)


@contextmanager
def sigterm_stops_runs() -> Iterator[None]:
    """Within the block, SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread."""

    def handler(signum, frame):
        _received.append(signum)
        raise Terminated(f"stopped by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


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
