"""Two processes on one workspace, and a process killed mid-finalize (real subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestration.locking import WorkspaceLocked, lock_path, workspace_lock
from orchestration.sql import connect

HERE = Path(__file__).resolve().parent
FAULTS = HERE.parent / "fault_injection"  # its sitecustomize.py makes finalize sleep on request


def sleep_in_finalize(seconds: float) -> dict:
    """The environment of a worker whose finalize sleeps before COMMIT, holding the lock."""
    pythonpath = os.pathsep.join([str(FAULTS), str(HERE)])
    return {"METERBOOK_TEST_SLEEP_IN_FINALIZE": str(seconds), "PYTHONPATH": pythonpath}


# A finalize run the way the CLI will do it: lock, connect, finalize, print the numbers.
WORKER = textwrap.dedent(
    """
    import sys
    from datetime import datetime, UTC
    from close_fixtures import catalog, drafts
    from orchestration.billing.finalize import finalize_period
    from orchestration.locking import workspace_lock, WorkspaceLocked
    from orchestration.sql import connect

    home, wait = sys.argv[1], float(sys.argv[2])
    try:
        with workspace_lock(home, "warehouse", wait):
            print("locked", flush=True)
            con = connect(home + "/warehouse.duckdb")
            for period in sys.argv[3:]:
                y, m = int(period[:4]), int(period[5:])
                now = datetime(y + m // 12, m % 12 + 1, 5, tzinfo=UTC)
                result = finalize_period(con, catalog(), period, now, drafts=drafts(period))
                print(period, [n for _, n in result.numbered], flush=True)
            con.close()
    except WorkspaceLocked as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
    """
)


def start(home: Path, wait: float, *periods: str, env: dict | None = None) -> subprocess.Popen:
    environment = {**os.environ, "PYTHONPATH": str(HERE), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(home), str(wait), *periods],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(proc: subprocess.Popen, needle: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if needle in line:
            return
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"worker never printed {needle!r}: {proc.stderr.read()}")


def ledger(home: Path):
    con = connect(home / "warehouse.duckdb")
    try:
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'meterbook_ledger'"
        ).fetchall()
        if not tables:
            return {}
        return {
            "numbers": [
                r[0]
                for r in con.execute(
                    "SELECT number FROM meterbook_ledger.invoices ORDER BY number"
                ).fetchall()
            ],
            "lines": con.execute("SELECT count(*) FROM meterbook_ledger.invoice_lines").fetchone()[
                0
            ],
            "statuses": con.execute(
                "SELECT count(*) FROM meterbook_ledger.invoice_status_changes"
            ).fetchone()[0],
            "seqs": con.execute("SELECT count(*) FROM meterbook_ledger.invoice_numbers").fetchone()[
                0
            ],
            "finalizations": con.execute(
                "SELECT count(*) FROM meterbook_ledger.period_finalizations"
            ).fetchone()[0],
        }
    finally:
        con.close()


def test_two_finalizes_at_once_take_turns_and_keep_the_ledger_consistent(tmp_path):
    # the first holds the lock for a while (it sleeps inside its transaction)
    first = start(tmp_path, 30, "2026-10", env=sleep_in_finalize(1.5))
    wait_for_line(first, "locked")
    second = start(tmp_path, 30, "2026-10", "2026-11")
    out_first, err_first = first.communicate(timeout=120)
    out_second, err_second = second.communicate(timeout=120)
    assert first.returncode == 0, err_first
    assert second.returncode == 0, err_second
    assert "2026-10 ['MB-2026-000001', 'MB-2026-000002', 'MB-2026-000003']" in out_first
    # the second saw October already finalized (a no-op), then numbered November after it
    assert "2026-10 []" in out_second
    assert "2026-11 ['MB-2026-000004', 'MB-2026-000005', 'MB-2026-000006']" in out_second
    assert ledger(tmp_path) == {
        "numbers": [f"MB-2026-{i:06d}" for i in range(1, 7)],
        "lines": 2 * (4 + 3 + 1),
        "statuses": 6,
        "seqs": 6,
        "finalizations": 2,
    }


def test_a_second_process_gives_up_after_waiting_with_one_clear_line(tmp_path):
    first = start(tmp_path, 30, "2026-10", env=sleep_in_finalize(20))
    try:
        wait_for_line(first, "locked")
        second = start(tmp_path, 0.3, "2026-10")
        _, err = second.communicate(timeout=60)
        assert second.returncode == 3
        message = err.strip()
        assert "\n" not in message
        assert message.startswith("workspace is busy: lock 'warehouse'")
        assert f"held by process {first.pid}" in message and "after waiting 0.3s" in message
    finally:
        first.kill()
        first.wait()


def test_killed_mid_finalize_leaves_nothing_and_the_next_run_completes(tmp_path):
    victim = start(tmp_path, 30, "2026-10", env=sleep_in_finalize(60))
    wait_for_line(victim, "sleeping")  # every insert is done, COMMIT is not
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    state = ledger(tmp_path)
    assert state["numbers"] == [] and state["lines"] == 0 and state["statuses"] == 0
    assert state["seqs"] == 0 and state["finalizations"] == 0
    # the lock died with the process: the next run gets it at once and completes the work
    rerun = start(tmp_path, 0, "2026-10")
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert ledger(tmp_path)["numbers"] == ["MB-2026-000001", "MB-2026-000002", "MB-2026-000003"]


def test_lock_is_reentrant_free_and_released(tmp_path):
    with workspace_lock(tmp_path, "warehouse", 0) as path:
        assert path == lock_path(tmp_path, "warehouse") and path.exists()
        # another open file description conflicts, even in the same process
        with (
            pytest.raises(WorkspaceLocked, match="lock 'warehouse'"),
            workspace_lock(tmp_path, "warehouse", 0.1),
        ):
            pass
        with workspace_lock(tmp_path, "documents", 0):  # other names are independent
            pass
    with workspace_lock(tmp_path, "warehouse", 0):
        pass
    with pytest.raises(ValueError, match="lock name"):
        lock_path(tmp_path, "../etc/passwd")
