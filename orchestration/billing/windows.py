"""What the close for one month bills, as rows for the warehouse (schema meterbook_billing).

For close month M, every subscription period whose last active day is in M becomes one
draft invoice. Python decides the calendar (periods, segments, trial, versions: pure
functions in periods.py / segments.py); dbt does the arithmetic over these rows:

- `invoice_periods`: one row per invoice, with the customer's currency, tax rate and the
  period before and after the cut to the active dates, and the next period (in-advance fees).
- `segments`: the segments of the invoice's period (`period_role = 'current'`, each with the
  metering window it is measured over) and of the next period (`'next'`, for fees only).
- `meter_windows`: one window per current segment, for metering (ARCHITECTURE.md), with the
  full period it belongs to (a `time_weighted` level is weighted by the period's length).
- `prior_fee_lines`: fixed-fee amounts already invoiced by earlier closes for each invoice's
  period (finalized in the ledger, else the earlier draft), to credit days no longer active.

All of the month's rows are replaced in one transaction, so a re-run gives the same rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

import duckdb

from orchestration.billing.line_kinds import kinds_in_group
from orchestration.billing.money import minor_exponent
from orchestration.billing.month import BillingMonth
from orchestration.billing.periods import (
    Period,
    local_midnight,
    next_period,
    period_containing,
    period_number,
    periods_closing_in,
)
from orchestration.billing.segments import Segment, segments_of
from orchestration.catalog.models import Catalog, Customer, Plan, Subscription
from orchestration.catalog.tables.billing import insert_rows
from orchestration.sql import transaction
from orchestration.warehouse.billing import SCHEMA, WINDOW_TABLES, ensure_billing_schema
from orchestration.warehouse.models import model_exists, with_refs
from orchestration.warehouse.tables import table_exists


@dataclass(frozen=True)
class BilledPeriod:
    """One invoice of the close: a subscription period and the segments it is rated by."""

    invoice_id: str
    subscription: Subscription
    customer: Customer
    plan: Plan
    full: Period
    active: Period
    next_full: Period
    segments: list[Segment]
    next_segments: list[Segment]


def invoice_id_for(subscription_id: str, period_start: date) -> str:
    """Stable across re-runs: the subscription and the (cut) period's first day."""
    digest = hashlib.sha256(f"{subscription_id}|{period_start.isoformat()}".encode()).hexdigest()
    return f"inv_{digest[:24]}"


def billed_periods(catalog: Catalog, close_month: str) -> Iterator[BilledPeriod]:
    """Every invoice the close for `close_month` makes, in catalog order."""
    month = BillingMonth.parse(close_month).period
    customers = {c.id: c for c in catalog.customers}  # Catalog.customer() scans: O(n) each
    plans = {p.code: p for p in catalog.plans}
    for sub in catalog.subscriptions:
        customer = customers[sub.customer_id]
        if not customer.billable:
            continue
        plan = plans[sub.plan]
        anchor = (plan.interval, sub.billing_anchor, sub.start_date)
        for full, active in periods_closing_in(month, *anchor, sub.end_date):
            following = next_period(full, *anchor)
            next_active = following.cut(sub.start_date, sub.end_date)
            yield BilledPeriod(
                invoice_id=invoice_id_for(sub.id, active.start),
                subscription=sub,
                customer=customer,
                plan=plan,
                full=full,
                active=active,
                next_full=following,
                segments=segments_of(active, sub, plan),
                next_segments=segments_of(next_active, sub, plan) if next_active else [],
            )


def _invoice_row(catalog: Catalog, close_month: str, bp: BilledPeriod) -> tuple:
    sub, plan = bp.subscription, bp.plan
    currency = catalog.currency_of(bp.customer)
    number = period_number(bp.full, plan.interval, sub.billing_anchor, sub.start_date)
    first = period_containing(sub.start_date, plan.interval, sub.billing_anchor, sub.start_date)
    return (
        (close_month, bp.invoice_id, sub.id, sub.customer_id, plan.code, currency)
        + (minor_exponent(currency), bp.customer.tax_rate, bp.customer.timezone)
        + (bp.active.start, bp.active.end, bp.full.start, bp.full.end)
        + (bp.next_full.start, bp.next_full.end, number, bp.full == first)
    )


def window_id_for(invoice_id: str, segment: Segment) -> str:
    return f"{invoice_id}:{segment.start.isoformat()}"


def segment_rows(close_month: str, bp: BilledPeriod) -> list[tuple]:
    rows = []
    for role, segments, full in (
        ("current", bp.segments, bp.full),
        ("next", bp.next_segments, bp.next_full),
    ):
        for no, seg in enumerate(segments, start=1):
            window = window_id_for(bp.invoice_id, seg) if role == "current" else None
            rows.append(
                (close_month, bp.invoice_id, role, no, window, seg.start, seg.end)
                + (bp.plan.code, seg.version, seg.is_trial, seg.days, full.days)
            )
    return rows


def window_rows(close_month: str, bp: BilledPeriod) -> list[tuple]:
    zone = bp.customer.timezone
    period = (local_midnight(bp.full.start, zone), local_midnight(bp.full.end, zone))
    return [
        (close_month, window_id_for(bp.invoice_id, seg), bp.subscription.customer_id)
        + (local_midnight(seg.start, zone), local_midnight(seg.end, zone), *period)
        for seg in bp.segments
    ]


def billing_window_rows(
    catalog: Catalog, close_month: str, subscriptions: frozenset[str] | None = None
) -> dict[str, list[tuple]]:
    """Every row of the close (of those `subscriptions` only, when given), computed before
    anything is written."""
    out: dict[str, list[tuple]] = {"invoice_periods": [], "segments": [], "meter_windows": []}
    for bp in billed_periods(catalog, close_month):
        if subscriptions is not None and bp.subscription.id not in subscriptions:
            continue
        out["invoice_periods"].append(_invoice_row(catalog, close_month, bp))
        out["segments"].extend(segment_rows(close_month, bp))
        out["meter_windows"].extend(window_rows(close_month, bp))
    return out


def write_billing_windows(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    close_month: str,
    subscriptions: frozenset[str] | None = None,
) -> None:
    """Replace `close_month`'s rows of meterbook_billing in one transaction.

    With `subscriptions`, only those are written (the re-rate of a finalized month for late
    events: its other invoices cannot change, and rating them again would cost a close)."""
    rows = billing_window_rows(catalog, close_month, subscriptions)
    ensure_billing_schema(con)
    prior_sql = _prior_fee_lines_sql(con)
    with transaction(con):
        for name in WINDOW_TABLES:
            con.execute(f"DELETE FROM {SCHEMA}.{name} WHERE close_month = ?", [close_month])
        for name, table_rows in rows.items():
            insert_rows(con, f"{SCHEMA}.{name}", WINDOW_TABLES[name], table_rows)
        if prior_sql is not None:
            con.execute(f"INSERT INTO {SCHEMA}.prior_fee_lines {prior_sql}", [close_month])
        # rewritten rows: the month's drafts are not finalizable until a close completes
        con.execute(f"DELETE FROM {SCHEMA}.draft_builds WHERE close_month = ?", [close_month])


def prior_fee_rows(con: duckdb.DuckDBPyConnection, close_month: str) -> list[tuple]:
    """The prior fee lines of `close_month` as the ledger and earlier drafts give them now."""
    prior_sql = _prior_fee_lines_sql(con)
    if prior_sql is None or not table_exists(con, SCHEMA, "invoice_periods"):
        return []
    return con.execute(prior_sql + " ORDER BY ALL", [close_month]).fetchall()


def _prior_fee_lines_sql(con: duckdb.DuckDBPyConnection) -> str | None:
    """Fixed-fee lines of earlier close months that paid for days of this close's periods:
    the ledger's lines for finalized (not void) invoices, the earlier drafts otherwise."""
    sources = []
    has_ledger = table_exists(con, "meterbook_ledger", "invoices") and table_exists(
        con, "meterbook_ledger", "invoice_lines"
    )
    if has_ledger:
        sources.append(_LEDGER_FEES)
    if model_exists(con, "fct_invoice_lines"):
        drafts = with_refs(_DRAFT_FEES)
        sources.append(drafts if not has_ledger else drafts + _NOT_IN_LEDGER)
    if not sources:
        return None
    return _PRIOR.format(prior=" UNION ALL ".join(sources))


_FEE_KINDS = "(" + ", ".join(f"'{kind}'" for kind in kinds_in_group("fixed_fees")) + ")"
_LEDGER_FEES = f"""
SELECT i.subscription_id, i.close_month, l.fee_code, l.period_start, l.period_end, l.amount
FROM meterbook_ledger.invoice_lines l JOIN meterbook_ledger.invoices i USING (invoice_id)
WHERE l.kind IN {_FEE_KINDS}
  AND coalesce((SELECT s.status FROM meterbook_ledger.invoice_status_changes s
                WHERE s.invoice_id = i.invoice_id
                ORDER BY s.changed_at DESC LIMIT 1), 'finalized') <> 'void'
"""
_DRAFT_FEES = (
    """
SELECT d.subscription_id, d.close_month, d.fee_code, d.period_start, d.period_end, d.amount
FROM {{ ref('fct_invoice_lines') }} d
"""
    + f"WHERE d.kind IN {_FEE_KINDS}\n"
)
_NOT_IN_LEDGER = "  AND d.invoice_id NOT IN (SELECT invoice_id FROM meterbook_ledger.invoices)\n"
_PRIOR = """
WITH prior AS ({prior})
SELECT ip.close_month, ip.invoice_id, p.fee_code, CAST(sum(p.amount) AS DECIMAL(38, 12))
FROM meterbook_billing.invoice_periods ip
JOIN prior p
  ON p.subscription_id = ip.subscription_id
 AND p.close_month < ip.close_month
 AND p.period_start < ip.full_period_end
 AND p.period_end > ip.full_period_start
WHERE ip.close_month = ?
GROUP BY ALL
"""
