"""Which events make a month's drafts stale (freshness.events_after_build)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from orchestration.billing.freshness import events_after_build
from orchestration.sql import connect
from orchestration.warehouse.billing import ensure_billing_schema

OCT, NOV = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def con(tmp_path):
    con = connect(tmp_path / "warehouse.duckdb")
    con.execute("CREATE SCHEMA meterbook_raw; CREATE SCHEMA meterbook_catalog")
    con.execute(
        "CREATE TABLE meterbook_raw.raw_events "
        "(read_seq BIGINT, customer_id VARCHAR, event_ts TIMESTAMPTZ, parse_reason VARCHAR)"
    )
    con.execute(
        "CREATE TABLE meterbook_catalog.customers AS SELECT * FROM (VALUES "
        "('acme', 'acme'), ('acme-lab', 'acme'), ('beta', 'beta')) t(customer_id, billing_customer_id)"
    )
    ensure_billing_schema(con)
    con.execute(
        "INSERT INTO meterbook_billing.meter_windows (close_month, window_id, "
        "billing_customer_id, window_start, window_end) VALUES ('2026-10', 'w1', 'acme', ?, ?)",
        [OCT, NOV],
    )
    yield con
    con.close()


def catalog(*aggregations: str):
    return SimpleNamespace(meters=[SimpleNamespace(aggregation=a) for a in aggregations])


def add(con, read_seq, customer, day, reason=None):
    con.execute(
        "INSERT INTO meterbook_raw.raw_events VALUES (?, ?, ?, ?)",
        [read_seq, customer, day, reason],
    )


def test_only_parsed_events_after_the_build_in_the_month_s_windows_count(con):
    add(con, 1, "acme", datetime(2026, 10, 5, tzinfo=UTC))  # built from
    add(con, 2, "acme", datetime(2026, 10, 6, tzinfo=UTC))  # late: counts
    add(con, 3, "acme-lab", datetime(2026, 10, 7, tzinfo=UTC))  # a sub-account: counts
    add(con, 4, "beta", datetime(2026, 10, 8, tzinfo=UTC))  # no window of its own
    add(con, 5, "acme", datetime(2026, 10, 9, tzinfo=UTC), "malformed")
    add(con, 6, "acme", NOV)  # the window is half-open
    add(con, 7, "acme", datetime(2026, 9, 30, tzinfo=UTC))  # before the period
    assert events_after_build(con, catalog("count", "sum"), "2026-10", 1) == 2
    assert events_after_build(con, catalog("count"), "2026-10", 3) == 0
    assert events_after_build(con, catalog("count"), "2026-11", 1) == 0  # no windows


def test_a_time_weighted_meter_counts_earlier_events_too(con):
    # the value held before the period is carried into it (SPEC 3.1)
    add(con, 7, "acme", datetime(2026, 9, 30, tzinfo=UTC))
    assert events_after_build(con, catalog("count", "latest"), "2026-10", 1) == 0
    assert events_after_build(con, catalog("time_weighted"), "2026-10", 1) == 1
