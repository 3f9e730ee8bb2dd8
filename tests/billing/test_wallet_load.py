"""The wallet close's inputs read from the warehouse (orchestration/billing/wallets/load.py),
on a small in-memory DuckDB shaped like the catalog tables it reads."""

from __future__ import annotations

from datetime import date

import duckdb

from orchestration.billing.wallets import load


# each billable customer's subscription days that no close up to November 2026 bills:
# q1's quarter Q4 (billed by December's close), m1's December, none for the non-billable
# customer nor for a subscription that ended with September
def test_unbilled_days_of_the_subscriptions():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA meterbook_catalog")
    con.execute(
        "CREATE TABLE meterbook_catalog.plans (plan_code VARCHAR, billing_interval VARCHAR)"
    )
    con.execute("INSERT INTO meterbook_catalog.plans VALUES ('q', 'quarter'), ('m', 'month')")
    con.execute(
        "CREATE TABLE subs (subscription_id VARCHAR, customer_id VARCHAR, plan_code VARCHAR,"
        " start_date DATE, end_date DATE, billing_anchor VARCHAR, billable BOOLEAN)"
    )
    con.execute(
        """INSERT INTO subs VALUES
        ('sq1', 'q1', 'q', '2026-07-01', NULL, 'calendar', true),
        ('sm1', 'm1', 'm', '2026-09-01', NULL, 'calendar', true),
        ('sm1old', 'm1', 'm', '2026-01-01', '2026-10-01', 'calendar', true),
        ('sx', 'x', 'q', '2026-07-01', NULL, 'calendar', false)"""
    )
    names = dict.fromkeys(("invoices", "segments", "grants", "plan_grants", "top_ups"), "-")
    rel = load.Relations(
        **names, subscriptions="subs", plans="meterbook_catalog.plans", events="-", drafts=None
    )
    assert load.unbilled(con, rel, date(2026, 12, 1)) == {
        "q1": [(date(2026, 10, 1), None)],
        "m1": [(date(2026, 12, 1), None)],
    }
