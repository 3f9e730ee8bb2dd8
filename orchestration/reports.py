"""What `meterbook events` and `meterbook invoices` print, for the CLI and the demo alike."""

from __future__ import annotations

import contextlib
import json
import sys
from contextlib import contextmanager

from orchestration.billing.invoice_json import format_invoices_table
from orchestration.billing.ledger import invoices_with_ledger
from orchestration.billing.lineage import line_events
from orchestration.billing.verify import verify_warehouse
from orchestration.defs.dbt.runner import environment
from orchestration.ingest.fates_report import events_report, format_events_report
from orchestration.workspace import Workspace


class NoWarehouse(RuntimeError):
    """Nothing has been ingested or closed in this workspace yet."""


def events_text(ws: Workspace, period: str | None, as_json: bool) -> str:
    """Every event's fate, for one month or all of them."""
    with _reader(ws) as con:
        report = events_report(con, period)
    return json.dumps(report, indent=2) if as_json else format_events_report(report)


def invoices_text(ws: Workspace, close_month: str, customer: str | None, as_json: bool) -> str:
    """The month's invoices (SPEC 5 JSON, or a table), finalized ones from the ledger."""
    with _reader(ws) as con:
        document = invoices_with_ledger(con, close_month, customer)
    return json.dumps(document, indent=2) if as_json else format_invoices_table(document)


def line_events_text(ws: Workspace, line_id: str, as_json: bool) -> str:
    """The billable events behind usage line `line_id` (lineage, found on demand)."""
    with _reader(ws) as con:
        events = line_events(con, line_id)
    if as_json:
        return json.dumps({"line_id": line_id, "events": events}, indent=2, default=str)
    if not events:
        return f"{line_id}: no billable events (not a usage line, or none in its window)"
    rows = [f"{line_id}: {len(events)} billable events"]
    rows += [
        f"  {e['event_ts']:%Y-%m-%dT%H:%M:%S.%fZ}  {e['customer_id']}/{e['event_id']}"
        f"  {e['path']}:{e['line_no']}"
        for e in events
    ]
    return "\n".join(rows)


def verify_text(ws: Workspace, as_json: bool) -> tuple[bool, str]:
    """Every check over everything stored (`meterbook verify`): the usage stage's dbt data
    tests over every event, lines read = fates per file and day, no key billed twice, every
    close month's lines against its events, and the ledger. Builds check only what they add;
    this is the full proof, on demand."""
    results = {"dbt_usage_tests": _verify_dbt_usage(ws)}
    with _reader(ws) as con:
        results.update(verify_warehouse(con))
    passed = all(ok for ok, _ in results.values())
    if as_json:
        body = {name: {"passed": ok, **meta} for name, (ok, meta) in results.items()}
        return passed, json.dumps({"passed": passed, "checks": body}, indent=2, default=str)
    lines = [f"{'ok    ' if ok else 'FAILED'} {name}" for name, (ok, _) in results.items()]
    lines += [
        f"  {name}: {json.dumps(meta, default=str)}"
        for name, (ok, meta) in results.items()
        if not ok
    ]
    lines.append("verify: every check passed" if passed else "verify: some checks FAILED")
    return passed, "\n".join(lines)


def _verify_dbt_usage(ws: Workspace) -> tuple[bool, dict]:
    from orchestration.defs.dbt.runner import DbtRunError, run_dbt  # noqa: PLC0415
    from orchestration.defs.resources import MeterbookWorkspace  # noqa: PLC0415

    if not ws.warehouse_path.exists():
        raise NoWarehouse(f"no warehouse at {ws.warehouse_path}: nothing to verify yet")
    workspace = MeterbookWorkspace(home=str(ws.home))
    try:
        with workspace.exclusive() as warehouse, environment({"METERBOOK_VERIFY_ALL": "1"}):
            args = ["test", "--select", "tag:usage", "--quiet", *_unbuilt(warehouse)]
            # dbt's log would mix with what verify prints (its JSON): to stderr
            with contextlib.redirect_stdout(sys.stderr):
                run_dbt(warehouse, args)
    except DbtRunError as exc:
        return False, {"error": str(exc)}
    return True, {}


def _unbuilt(warehouse) -> list[str]:
    """`--exclude` for what verify's dbt tests must not check: the windowed quantities, which
    hold the last close month built (each month's lines are checked in Python, below), and
    the usage models not built in this warehouse (daily usage is built only by the daily
    refresh)."""
    from orchestration.sql import connect  # noqa: PLC0415
    from orchestration.warehouse.models import model_exists  # noqa: PLC0415

    con = connect(warehouse)
    try:
        missing = [m for m in ("fct_daily_meter_usage",) if not model_exists(con, m)]
    finally:
        con.close()
    return ["--exclude", "int_meter_quantities_windowed", *missing]


@contextmanager
def _reader(ws: Workspace):
    from orchestration.defs.dbt.project import ensure_manifest  # noqa: PLC0415 (loads Dagster)
    from orchestration.defs.resources import MeterbookWorkspace  # noqa: PLC0415

    if not ws.warehouse_path.exists():
        raise NoWarehouse(
            f"no warehouse at {ws.warehouse_path}: run `meterbook close` or `meterbook ingest` first"
        )
    ensure_manifest()  # the reports name dbt models through it (warehouse/models.py)
    with MeterbookWorkspace(home=str(ws.home)).reader() as con:
        yield con
