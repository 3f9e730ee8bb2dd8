"""What `meterbook events` and `meterbook invoices` print, for the CLI and the demo alike."""

from __future__ import annotations

import json
from contextlib import contextmanager

from orchestration.billing.invoice_json import format_invoices_table
from orchestration.billing.ledger import invoices_with_ledger
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
