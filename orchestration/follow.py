"""`meterbook follow`: the micro-batch loop in one process, without the Dagster daemon.

Every `interval` seconds (start to start; the catalog's `settings.events_api.follow_seconds`
unless given), when a landing file is waiting (the events API's at once, any other once it
has settled), it runs the `ingest_landing_files` job: the new files' events get their fates,
the current period's usage is counted again, the entitlement snapshot is republished and the
alerts are checked. Each cycle's lag (the oldest new event's arrival to the publish) is the
snapshot's `lag_seconds` metadata, `published/status.json` and `GET /v1/status`. A failed
cycle is reported and the loop goes on (the next one retries the same files); SIGINT or
SIGTERM between cycles ends it normally; during a cycle, the run is stopped and marked
failed, as for any command (the next `follow` or ingest reads the same files again).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from orchestration.catalog import CatalogError, load_catalog_cached
from orchestration.catalog.models import Settings
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.ingest.discovery import list_landing_files
from orchestration.ingest.ingest import pending_files
from orchestration.ingest.refresh_status import read_json, refresh_status_path
from orchestration.interrupts import stopped
from orchestration.locking import WorkspaceLocked
from orchestration.pipeline import RunOutcome, run_job
from orchestration.workspace import Workspace

JOB = "ingest_landing_files"


def follow(
    ws: Workspace,
    say: Callable[[str], None],
    interval: float | None = None,
    cycles: int | None = None,
) -> int:
    """Runs until stopped, or until `cycles` ingests have run; the number of failed ones."""
    failed = ran = 0
    while cycles is None or ran < cycles:
        started = time.monotonic()
        every = interval if interval is not None else _interval(ws)
        waiting = _waiting(ws)
        if waiting:
            outcome = run_job(ws, JOB)
            ran += 1
            failed += 0 if outcome.success else 1
            say(_cycle_line(ws, outcome, waiting))
        pause = every - (time.monotonic() - started)
        if pause > 0 and (cycles is None or ran < cycles):
            try:
                time.sleep(pause)
            except KeyboardInterrupt:  # SIGINT or SIGTERM between cycles: the normal end
                stopped()
                break
    return failed


def _settings(ws: Workspace) -> Settings:
    """The catalog's settings; its defaults while it does not load (the cycle's run then fails
    on the catalog and says where: the loop reports it and goes on, as for any failed run)."""
    try:
        return load_catalog_cached(ws.catalog_dir).settings
    except CatalogError:
        return Settings()


def _interval(ws: Workspace) -> float:
    return float(_settings(ws).events_api.follow_seconds)


def _waiting(ws: Workspace) -> int:
    """How many landing files wait for an ingest (0 while another run holds the workspace)."""
    if not ws.warehouse_path.exists():
        return len(list_landing_files(ws.landing_dir))  # the first ingest makes the warehouse
    settle = _settings(ws).landing_settle_seconds
    resource = MeterbookWorkspace(home=str(ws.home))
    try:
        with resource.reader(wait_seconds=0) as con:
            return len(pending_files(con, ws.landing_dir, settle_seconds=settle))
    except WorkspaceLocked:
        return 0  # a close or an ingest runs: this cycle has nothing to add


def _cycle_line(ws: Workspace, outcome: RunOutcome, waiting: int) -> str:
    if not outcome.success:
        return f"{JOB} failed: {outcome.error} (Dagster run {outcome.run_id}); retrying next cycle"
    status = read_json(refresh_status_path(ws.home)) or {}
    if status.get("run_id") != outcome.run_id:
        return f"{waiting} file(s) ingested (Dagster run {outcome.run_id})"
    return (
        f"{status['files']} file(s), {status['lines_read']} line(s) ingested; usage as of "
        f"{status['usage_watermark']}; lag {float(status['lag_seconds']):.1f} s "
        f"(Dagster run {outcome.run_id})"
    )
