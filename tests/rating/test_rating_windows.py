"""write_billing_tables / write_billing_windows: the rows rating reads, replaced per month."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from rating_harness import catalog_from_text

from orchestration.billing.windows import (
    invoice_id_for,
    write_billing_windows,
)
from orchestration.catalog.tables.billing import write_billing_tables
from orchestration.sql import connect
from orchestration.warehouse.billing import ensure_billing_schema
from orchestration.warehouse.ledger import ensure_ledger_schema

CATALOG = """
meters:
  - {code: calls, event_name: api.request, aggregation: count}
plans:
  - code: pro
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        trial_days: 5
        fixed_fees: [{code: platform, amount: "10"}]
        charges:
          - meter: calls
            model: graduated
            tiers: [{up_to: 10, unit_price: "1"}, {up_to: null, unit_price: "0.5", flat_fee: "2"}]
      - version: 2
        effective_from: 2026-10-20
        charges: [{meter: calls, model: per_unit, unit_price: "0.2"}]
customers:
  - {id: tokyo, currency: USD, timezone: Asia/Tokyo, tax_rate: "0.1"}
  - {id: kid, parent_id: tokyo}
  - {id: utc, currency: USD}
subscriptions:
  - id: s_tokyo
    customer_id: tokyo
    plan: pro
    start_date: 2026-10-10
    quantities: {platform: 3}
    price_overrides: [{meter: calls, model: per_unit, unit_price: "0.1", effective_to: 2026-10-15}]
    discounts: [{code: d, percent_off: "5", periods: 2}]
  - {id: s_utc, customer_id: utc, plan: pro, start_date: 2026-01-01, end_date: 2026-10-25}
"""


@pytest.fixture()
def setup(tmp_path):
    catalog = catalog_from_text(tmp_path, CATALOG)
    con = connect(tmp_path / "w.duckdb")
    write_billing_tables(con, catalog)
    yield con, catalog
    con.close()


def rows(con, sql, params=()):
    return con.execute(sql, list(params)).fetchall()


def test_catalog_tables_hold_typed_pricing(setup):
    con, _ = setup
    assert rows(con, "SELECT tier_no, tier_from, up_to, flat_fee FROM meterbook_catalog.tiers") == [
        (1, Decimal(0), Decimal(10), Decimal(0)),
        (2, Decimal(10), None, Decimal(2)),
    ]
    assert rows(
        con,
        "SELECT subscription_id, trial_end, currency_exponent, timezone, tax_rate "
        "FROM meterbook_catalog.subscriptions ORDER BY 1",
    ) == [
        ("s_tokyo", date(2026, 10, 15), 2, "Asia/Tokyo", Decimal("0.1")),
        ("s_utc", date(2026, 1, 6), 2, "UTC", Decimal(0)),
    ]
    assert rows(
        con, "SELECT effective_from, effective_to FROM meterbook_catalog.price_overrides"
    ) == [
        (date(2026, 10, 10), date(2026, 10, 15))  # no effective_from: the start date
    ]
    assert rows(
        con, "SELECT fee_code, quantity FROM meterbook_catalog.subscription_quantities"
    ) == [("platform", Decimal(3))]


def test_rewriting_the_catalog_replaces_its_rows(setup, tmp_path):
    con, _ = setup
    smaller = catalog_from_text(tmp_path / "b", CATALOG.split("  - {id: s_utc")[0])
    write_billing_tables(con, smaller)
    assert rows(con, "SELECT count(*) FROM meterbook_catalog.subscriptions") == [(1,)]


def test_windows_segments_and_invoices_of_a_close(setup):
    con, catalog = setup
    write_billing_windows(con, catalog, "2026-10")
    invoices = rows(
        con,
        "SELECT subscription_id, period_start, period_end, next_period_start, period_number, "
        "is_first_period, invoice_id FROM meterbook_billing.invoice_periods ORDER BY 1",
    )
    assert [r[:6] for r in invoices] == [
        ("s_tokyo", date(2026, 10, 10), date(2026, 11, 1), date(2026, 11, 1), 1, True),
        ("s_utc", date(2026, 10, 1), date(2026, 10, 25), date(2026, 11, 1), 10, False),
    ]
    assert invoices[0][6] == invoice_id_for("s_tokyo", date(2026, 10, 10))
    segments = rows(
        con,
        "SELECT s.segment_start, s.segment_end, s.version, s.is_trial, s.days, s.period_days "
        "FROM meterbook_billing.segments s JOIN meterbook_billing.invoice_periods i USING (invoice_id) "
        "WHERE i.subscription_id = 's_tokyo' AND s.period_role = 'current' ORDER BY 1",
    )
    # cut at trial_end (Oct 15 = override's effective_to too) and at version 2 (Oct 20)
    assert segments == [
        (date(2026, 10, 10), date(2026, 10, 15), 1, True, 5, 31),
        (date(2026, 10, 15), date(2026, 10, 20), 1, False, 5, 31),
        (date(2026, 10, 20), date(2026, 11, 1), 2, False, 12, 31),
    ]
    windows = rows(
        con,
        "SELECT billing_customer_id, window_start, window_end FROM meterbook_billing.meter_windows "
        "WHERE billing_customer_id = 'tokyo' ORDER BY window_start",
    )
    assert windows[0] == (
        "tokyo",
        datetime(2026, 10, 9, 15, tzinfo=UTC),  # midnight in Tokyo
        datetime(2026, 10, 14, 15, tzinfo=UTC),
    )
    assert len(windows) == 3
    # each window knows the whole period it is a segment of (a time_weighted level's share),
    # October in Tokyo, though the subscription starts on the 10th
    periods = rows(
        con,
        "SELECT DISTINCT period_start, period_end FROM meterbook_billing.meter_windows "
        "WHERE billing_customer_id = 'tokyo'",
    )
    assert periods == [
        (datetime(2026, 9, 30, 15, tzinfo=UTC), datetime(2026, 10, 31, 15, tzinfo=UTC))
    ]
    # the ended subscription has no next period to bill in advance
    assert rows(
        con,
        "SELECT count(*) FROM meterbook_billing.segments s JOIN meterbook_billing.invoice_periods i "
        "USING (invoice_id) WHERE i.subscription_id = 's_utc' AND s.period_role = 'next'",
    ) == [(0,)]


def test_a_rerun_replaces_only_its_month(setup):
    con, catalog = setup
    write_billing_windows(con, catalog, "2026-09")
    write_billing_windows(con, catalog, "2026-10")
    before = rows(con, "SELECT * FROM meterbook_billing.meter_windows ORDER BY ALL")
    write_billing_windows(con, catalog, "2026-10")
    assert rows(con, "SELECT * FROM meterbook_billing.meter_windows ORDER BY ALL") == before
    months = rows(
        con, "SELECT DISTINCT close_month FROM meterbook_billing.invoice_periods ORDER BY 1"
    )
    assert months == [("2026-09",), ("2026-10",)]


def test_adjustment_lines_exist_for_rating_even_when_empty(setup):
    con, catalog = setup
    write_billing_windows(con, catalog, "2026-10")
    assert rows(con, "SELECT count(*) FROM meterbook_billing.adjustment_lines") == [(0,)]


def _draft_lines(con, lines):
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    con.execute(
        "CREATE TABLE marts.fct_invoice_lines (close_month VARCHAR, invoice_id VARCHAR, "
        "subscription_id VARCHAR, kind VARCHAR, fee_code VARCHAR, period_start DATE, "
        "period_end DATE, amount DECIMAL(38, 12))"
    )
    con.executemany("INSERT INTO marts.fct_invoice_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?)", lines)


def test_prior_fee_lines_prefer_the_ledger_and_skip_voided_invoices(setup):
    con, catalog = setup
    sep, nov = ("2026-09-01", "2026-10-01"), ("2026-10-01", "2026-11-01")
    _draft_lines(
        con,
        [
            ("2026-09", "inv_a", "s_utc", "fixed_fee", "platform", *nov, Decimal("10")),
            # a period the October invoice does not cover, and a line of October itself
            ("2026-09", "inv_a", "s_utc", "fixed_fee", "platform", *sep, Decimal("99")),
            ("2026-10", "inv_b", "s_utc", "fixed_fee", "platform", *nov, Decimal("77")),
        ],
    )
    write_billing_windows(con, catalog, "2026-10")
    assert rows(con, "SELECT fee_code, amount FROM meterbook_billing.prior_fee_lines") == [
        ("platform", Decimal(10))
    ]
    ensure_ledger_schema(con)
    con.execute(
        "INSERT INTO meterbook_ledger.invoices (invoice_id, number, close_month, customer_id, "
        "subscription_id, currency, currency_exponent, period_start, period_end, subtotal, "
        "discount_total, tax_total, total, credits_applied, amount_due, finalized_at, document) "
        "VALUES ('inv_a', 'MB-2026-000001', '2026-09', 'utc', 's_utc', 'USD', 2, '2026-09-01', "
        "'2026-10-01', 0, 0, 0, 0, 0, 0, now(), '{}')"
    )
    con.execute(
        "INSERT INTO meterbook_ledger.invoice_lines (invoice_id, line_id, position, kind, fee_code, "
        "description, period_start, period_end, amount) VALUES ('inv_a', 'l1', 1, 'fixed_fee', "
        "'platform', 'Platform', '2026-10-01', '2026-11-01', 12)"
    )
    write_billing_windows(con, catalog, "2026-10")
    assert rows(con, "SELECT amount FROM meterbook_billing.prior_fee_lines") == [(Decimal(12),)]
    con.execute(
        "INSERT INTO meterbook_ledger.invoice_status_changes (invoice_id, status, changed_at, reason) "
        "VALUES ('inv_a', 'void', now(), 'oops')"
    )
    write_billing_windows(con, catalog, "2026-10")
    assert rows(con, "SELECT count(*) FROM meterbook_billing.prior_fee_lines") == [(0,)]


def test_a_bad_close_month_is_refused_before_anything_is_written(setup):
    con, catalog = setup
    with pytest.raises(ValueError, match="YYYY-MM"):
        write_billing_windows(con, catalog, "2026-10-01")


def test_a_warehouse_from_before_the_window_periods_gains_them(tmp_path):
    """Windows written before meter_windows kept their period: the columns are added, empty
    in the old rows (the staging model then weighs by the window, as those months were)."""
    con = connect(tmp_path / "old.duckdb")
    con.execute(
        "CREATE SCHEMA meterbook_billing; CREATE TABLE meterbook_billing.meter_windows "
        "(close_month VARCHAR, window_id VARCHAR, billing_customer_id VARCHAR, "
        "window_start TIMESTAMPTZ, window_end TIMESTAMPTZ); INSERT INTO "
        "meterbook_billing.meter_windows VALUES ('2026-09', 'w', 'acme', '2026-09-01', '2026-10-01')"
    )
    ensure_billing_schema(con)
    ensure_billing_schema(con)  # twice: nothing more
    assert rows(
        con, "SELECT window_id, period_start, period_end FROM meterbook_billing.meter_windows"
    ) == [("w", None, None)]
