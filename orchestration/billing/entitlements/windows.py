"""The current period of every active subscription, as of the usage watermark (SPEC 9).

Entitlements and alerts look at the period the latest usage falls in, not the wall clock's:
a workspace replaying October shows October, and a backlog being ingested shows the period
its events reach. Python decides the calendar (periods.py, as the close does); the
entitlement models count each window's events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import duckdb

from orchestration.billing.periods import Period, local_midnight, period_containing
from orchestration.catalog.models import Catalog, Customer, Plan, PlanVersion, Subscription
from orchestration.catalog.tables.billing import insert_rows
from orchestration.sql import transaction
from orchestration.warehouse.entitlements import (
    CURRENT_WINDOWS,
    SCHEMA,
    ensure_entitlements_schema,
)
from orchestration.warehouse.tables import table_exists


@dataclass(frozen=True)
class CurrentPeriod:
    subscription: Subscription
    customer: Customer
    plan: Plan
    version: PlanVersion | None
    period: Period  # cut to the subscription's dates; local days of the customer
    window_start: datetime  # UTC instants of the period's local midnights
    window_end: datetime

    @property
    def window_id(self) -> str:
        return f"{self.subscription.id}:{self.period.start.isoformat()}"


def usage_as_of(con: duckdb.DuckDBPyConnection, now: datetime) -> datetime | None:
    """The usage watermark: the latest event time ingested (a readable event), never later
    than `now`: one future-dated event must not move everyone into next month."""
    if not table_exists(con, "meterbook_raw", "raw_events"):
        return None
    row = con.execute(
        "SELECT max(event_ts) FROM meterbook_raw.raw_events "
        "WHERE parse_reason IS NULL AND event_ts <= ?",
        [now],
    ).fetchall()[0]
    return row[0]


def windows_as_of(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The watermark the current windows were last written at (None: no window)."""
    if not table_exists(con, SCHEMA, "current_windows"):
        return None
    return con.execute(f"SELECT max(as_of) FROM {SCHEMA}.current_windows").fetchall()[0][0]


def current_periods(catalog: Catalog, as_of: datetime) -> list[CurrentPeriod]:
    """Every subscription active at `as_of` (in its customer's time zone), with its period."""
    found = []
    for sub in catalog.subscriptions:
        customer = catalog.find_customer(sub.customer_id)
        if customer is None:
            continue
        day = as_of.astimezone(ZoneInfo(customer.timezone)).date()
        if day < sub.start_date or (sub.end_date is not None and day >= sub.end_date):
            continue
        plan = catalog.plan(sub.plan)
        full = period_containing(day, plan.interval, sub.billing_anchor, sub.start_date)
        active = full.cut(sub.start_date, sub.end_date)
        if active is None:
            continue
        version = plan.version_at(sub.start_date if sub.pin_version else day)
        found.append(
            CurrentPeriod(
                sub,
                customer,
                plan,
                version,
                active,
                local_midnight(active.start, customer.timezone),
                local_midnight(active.end, customer.timezone),
            )
        )
    return found


def write_current_windows(
    con: duckdb.DuckDBPyConnection, periods: list[CurrentPeriod], as_of: datetime | None
) -> int:
    """Replace the windows table with `periods` (one transaction: the models never read half)."""
    rows = [
        (p.window_id, p.subscription.id, p.customer.id, p.window_start, p.window_end, as_of)
        for p in periods
    ]
    ensure_entitlements_schema(con)  # a new workspace: this runs before any dbt build
    with transaction(con):
        con.execute(f"DELETE FROM {SCHEMA}.current_windows")
        insert_rows(con, f"{SCHEMA}.current_windows", CURRENT_WINDOWS, rows)
    return len(rows)
