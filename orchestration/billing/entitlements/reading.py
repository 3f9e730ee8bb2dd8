"""What the entitlement models counted for the current periods, and the drafts that bill
those periods, read from the warehouse into PeriodUsage (snapshot.py)."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pyarrow as pa

from orchestration.billing.entitlements.snapshot import PeriodUsage
from orchestration.billing.entitlements.windows import CurrentPeriod
from orchestration.billing.invoice_json import decimal_text, money_text
from orchestration.warehouse.models import model_exists, with_refs

# the month-so-far pages chart the busiest meter: a chart costs ~1.5 ms, 15 s at 10,000
# customers (4 charts a page made the close of 10,000 customers 45 s longer)
CHARTED_METERS = 1


def read_period_usage(
    con: duckdb.DuckDBPyConnection, periods: list[CurrentPeriod], daily: bool = False
) -> dict[str, PeriodUsage]:
    """Quantities and drafts of the current periods; `daily`: the days of each period's
    CHARTED_METERS busiest meters too (for the pages)."""
    usage = {p.window_id: PeriodUsage() for p in periods}
    if not periods:
        return usage
    _quantities(con, usage)
    if daily:
        _daily(con, usage)
    _drafts(con, periods, usage)
    return usage


def _quantities(con, usage: dict[str, PeriodUsage]) -> None:
    if not model_exists(con, "fct_current_period_usage"):
        return
    rows = con.execute(
        with_refs(
            "SELECT window_id, meter_code, quantity, event_count "
            "FROM {{ ref('fct_current_period_usage') }}"
        )
    ).fetchall()
    for window_id, meter, quantity, events in rows:
        if window_id in usage:
            usage[window_id].quantities[meter] = (Decimal(quantity), int(events))


def _daily(con, usage: dict[str, PeriodUsage]) -> None:
    if not model_exists(con, "fct_current_period_daily_usage"):
        return
    rows = con.execute(with_refs(_DAILY), [CHARTED_METERS]).fetchall()
    for window_id, meter, day, quantity in rows:
        if window_id in usage:
            usage[window_id].daily.setdefault(meter, []).append((day, Decimal(quantity)))


def _drafts(con, periods: list[CurrentPeriod], usage: dict[str, PeriodUsage]) -> None:
    """The invoice of each current period, as the latest close built it (a draft until the
    period ends and is finalized); none before a close of its month ran."""
    if not model_exists(con, "fct_invoices"):
        return
    wanted = pa.table(
        {
            "window_id": [p.window_id for p in periods],
            "subscription_id": [p.subscription.id for p in periods],
            "period_start": [p.period.start for p in periods],
        }
    )
    con.register("_current_periods", wanted)
    try:
        invoices = con.execute(with_refs(_INVOICES)).fetchall()
        lines = con.execute(with_refs(_LINES)).fetchall()
    finally:
        con.unregister("_current_periods")
    for window_id, invoice_id, status, currency, exponent, subtotal, tax, total in invoices:
        usage[window_id].draft = {
            "invoice_id": invoice_id,
            "status": status,
            "currency": currency,
            "subtotal": money_text(subtotal, exponent),
            "tax": money_text(tax, exponent),
            "total": money_text(total, exponent),
            "lines": [],
        }
    for window_id, kind, description, quantity, amount, exponent in lines:
        draft = usage[window_id].draft
        if draft is not None:
            draft["lines"].append(
                {
                    "kind": kind,
                    "description": description,
                    "quantity": decimal_text(quantity),
                    "amount": money_text(amount, exponent),
                }
            )


_DAILY = """
WITH charted AS (
    SELECT window_id, meter_code
    FROM {{ ref('fct_current_period_usage') }}
    WHERE event_count > 0
    QUALIFY row_number() OVER (
        PARTITION BY window_id ORDER BY event_count DESC, meter_code) <= ?
)
SELECT d.window_id, d.meter_code, d.usage_date, d.quantity
FROM {{ ref('fct_current_period_daily_usage') }} AS d
JOIN charted USING (window_id, meter_code)
ORDER BY ALL
"""

_INVOICES = """
SELECT c.window_id, i.invoice_id, i.status, i.currency, i.currency_exponent,
       i.subtotal, i.tax_total, i.total
FROM _current_periods AS c
JOIN {{ ref('fct_invoices') }} AS i
  ON i.subscription_id = c.subscription_id AND i.period_start = c.period_start
"""

_LINES = """
SELECT c.window_id, l.kind, l.description, l.quantity, l.amount, l.currency_exponent
FROM _current_periods AS c
JOIN {{ ref('fct_invoices') }} AS i
  ON i.subscription_id = c.subscription_id AND i.period_start = c.period_start
JOIN {{ ref('fct_invoice_lines') }} AS l
  ON l.close_month = i.close_month AND l.invoice_id = i.invoice_id
ORDER BY c.window_id, l.line_no
"""
