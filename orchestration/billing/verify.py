"""Every reconciliation over everything stored, for `meterbook verify` (the builds and closes
check what they add; this proves the whole warehouse again, on demand)."""

from __future__ import annotations

from typing import Any

import duckdb

from orchestration.billing.reconciliation import (
    check_events_in_one_line,
    check_ledger,
    check_meter_totals,
)
from orchestration.billing.usage_checks import usage_problems
from orchestration.warehouse.models import model_exists
from orchestration.warehouse.tables import table_exists


def verify_warehouse(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[bool, dict[str, Any]]]:
    """Each check by name: (passed, metadata)."""
    results: dict[str, tuple[bool, dict[str, Any]]] = {}
    if model_exists(con, "int_events_fated"):
        results.update(usage_problems(con, since=0))
    for month in _closed_months(con):
        results[f"events_in_one_line {month}"] = check_events_in_one_line(con, month)
        results[f"meter_totals {month}"] = check_meter_totals(con, month)
    results["ledger"] = check_ledger(con)
    return results


def _closed_months(con: duckdb.DuckDBPyConnection) -> list[str]:
    if not model_exists(con, "fct_invoice_lines") or not table_exists(
        con, "meterbook_billing", "meter_windows"
    ):
        return []
    rows = con.execute(
        "SELECT DISTINCT close_month FROM meterbook_billing.meter_windows ORDER BY 1"
    ).fetchall()
    return [row[0] for row in rows]
