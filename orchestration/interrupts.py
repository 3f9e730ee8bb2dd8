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

PID_TAG = "meterbook/pid"
HOST_TAG = "meterbook/host"


class RunInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM; Dagster has marked it failed."""


def sigterm_as_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt, as Ctrl-C does. Dagster maps SIGTERM to its SIGINT
    handling while it executes a run; this gives the rest of the command the same."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


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
