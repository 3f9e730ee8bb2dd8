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
from orchestration.billing.revenue.checks import (
    check_balances,
    check_deferred,
    check_journal,
    check_schedule_sums,
)
from orchestration.billing.usage_checks import usage_problems
from orchestration.warehouse.models import model_exists, relation
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
    results.update(_revenue(con))
    return results


def _revenue(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[bool, dict[str, Any]]]:
    """The revenue invariants, for every month the revenue job built (none before it ran)."""
    if not model_exists(con, "fct_revenue_rollforward"):
        return {}
    results = {"revenue_schedule_sums": check_schedule_sums(con)}
    months = con.execute(
        "SELECT DISTINCT revenue_month FROM (SELECT revenue_month FROM"
        f" {relation('fct_revenue_rollforward')} UNION ALL SELECT revenue_month FROM"
        f" {relation('fct_revenue_journal')}) ORDER BY 1"
    ).fetchall()
    for (month,) in months:
        results[f"revenue_balances {month}"] = check_balances(con, month)
        results[f"revenue_journal {month}"] = check_journal(con, month)
        results[f"revenue_deferred {month}"] = check_deferred(con, month)
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
