"""pull_payment_status and overdue_invoices against the double."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from stripe_fixtures import PERIOD, catalog, insert_standard_ledger, set_status

from integrations.stripe.status import overdue_invoices, pull_payment_status
from integrations.stripe.sync import sync_period

NOW = datetime(2026, 11, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def synced(warehouse, gateway, stripe_double):
    stripe_double.clock = lambda: int(NOW.timestamp())
    insert_standard_ledger(warehouse)
    assert not sync_period(warehouse, catalog(), PERIOD, gateway).failures
    return {
        our: stripe_double.invoices_for(our)[0]["id"]
        for our in ("inv_acme_2026_10", "inv_tokyo_2026_10", "inv_gulf_2026_10")
    }


def receivables(con) -> dict[str, tuple]:
    rows = con.execute(
        "SELECT invoice_id, status, amount_due, amount_paid, amount_remaining, attempt_count, "
        "next_payment_attempt, due_date, currency_exponent "
        "FROM meterbook_stripe.accounts_receivable"
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def test_pull_records_each_status_with_decimal_amounts(warehouse, gateway, stripe_double, synced):
    next_try = int((NOW + timedelta(days=3)).timestamp())
    stripe_double.pay(synced["inv_acme_2026_10"])
    stripe_double.fail_payment(synced["inv_gulf_2026_10"], next_try)
    stripe_double.mark_uncollectible(synced["inv_gulf_2026_10"])
    result = pull_payment_status(warehouse, gateway, NOW)
    assert result.metadata()["pulled"] == 3 and result.requests_sent == 3
    rows = receivables(warehouse)
    due_tokyo = NOW + timedelta(days=14)
    assert rows["inv_acme_2026_10"] == (
        "paid", Decimal("162.72"), Decimal("162.72"), Decimal("0"), 1, None, None, 2,
    )  # fmt: skip
    assert rows["inv_tokyo_2026_10"] == (
        "open", Decimal("7263"), Decimal("0"), Decimal("7263"), 0, None, due_tokyo, 0,
    )  # fmt: skip
    assert rows["inv_gulf_2026_10"] == (
        "uncollectible", Decimal("17.365"), Decimal("0"), Decimal("17.365"), 1,
        datetime.fromtimestamp(next_try, UTC), None, 3,
    )  # fmt: skip
    statuses = warehouse.execute(
        "SELECT stripe_status FROM meterbook_stripe.invoices ORDER BY number"
    ).fetchall()
    assert statuses == [("paid",), ("open",), ("uncollectible",)]


def test_paid_and_void_invoices_are_not_pulled_again(warehouse, gateway, stripe_double, synced):
    stripe_double.pay(synced["inv_acme_2026_10"])
    set_status(warehouse, "inv_gulf_2026_10", "void")
    sync_period(warehouse, catalog(), PERIOD, gateway)  # voids gulf in Stripe
    pull_payment_status(warehouse, gateway, NOW)
    before = len(stripe_double.log)
    again = pull_payment_status(warehouse, gateway, NOW)
    assert [r.invoice_id for r in again.pulled] == ["inv_tokyo_2026_10"]
    assert [r.path for r in stripe_double.log[before:]] == [
        f"/v1/invoices/{synced['inv_tokyo_2026_10']}"
    ]
    assert receivables(warehouse)["inv_gulf_2026_10"][0] == "void"


def test_overdue_lists_past_due_invoices_and_failed_charges_oldest_first(
    warehouse, gateway, stripe_double, synced
):
    pull_payment_status(warehouse, gateway, NOW)
    assert overdue_invoices(warehouse, NOW) == []  # charges in progress, tokyo not due yet
    stripe_double.fail_payment(synced["inv_acme_2026_10"], None)
    pull_payment_status(warehouse, gateway, NOW)
    later = NOW + timedelta(days=20)
    overdue = overdue_invoices(warehouse, later)
    assert [(o.number, o.days_overdue, o.amount_remaining) for o in overdue] == [
        ("MB-2026-000001", 20, Decimal("162.72")),  # due at finalization, a charge failed
        ("MB-2026-000002", 6, Decimal("7263")),  # send_invoice, due 14 days after
    ]
    stripe_double.pay(synced["inv_tokyo_2026_10"])
    pull_payment_status(warehouse, gateway, later)
    assert [o.number for o in overdue_invoices(warehouse, later)] == ["MB-2026-000001"]


def test_a_stripe_error_on_one_invoice_does_not_stop_the_pull(
    warehouse, gateway, stripe_double, synced
):
    stripe_double.reject(
        lambda r: r.method == "GET" and r.path.endswith(synced["inv_tokyo_2026_10"]),
        "No such invoice",
    )
    result = pull_payment_status(warehouse, gateway, NOW)
    assert len(result.pulled) == 2
    assert result.failures[0][0] == "MB-2026-000002"
    assert "No such invoice" in result.metadata()["errors"][0]


def dunning_columns(con) -> dict[str, tuple]:
    rows = con.execute(
        "SELECT invoice_id, first_failed_at, hosted_invoice_url "
        "FROM meterbook_stripe.accounts_receivable"
    ).fetchall()
    return {row[0]: row[1:] for row in rows}


def test_the_first_failed_charge_is_dated_by_the_pull_that_saw_it_and_kept(
    warehouse, gateway, stripe_double, synced
):
    acme = synced["inv_acme_2026_10"]
    stripe_double.invoices[acme]["hosted_invoice_url"] = f"https://invoice.stripe.test/{acme}"
    pull_payment_status(warehouse, gateway, NOW)
    assert dunning_columns(warehouse)["inv_acme_2026_10"] == (
        None,
        f"https://invoice.stripe.test/{acme}",
    )  # fmt: skip  (no attempt failed yet: dunning has no day to count from)
    stripe_double.fail_payment(acme, None)
    seen = NOW + timedelta(hours=6)
    pull_payment_status(warehouse, gateway, seen)
    stripe_double.fail_payment(acme, None)  # a retry fails too: the date does not move
    pull_payment_status(warehouse, gateway, seen + timedelta(days=3))
    assert dunning_columns(warehouse)["inv_acme_2026_10"][0] == seen
    stripe_double.pay(acme)  # a successful attempt counts too, but the invoice is paid
    pull_payment_status(warehouse, gateway, seen + timedelta(days=4))
    assert receivables(warehouse)["inv_acme_2026_10"][0] == "paid"
    assert dunning_columns(warehouse)["inv_acme_2026_10"][0] == seen
    assert dunning_columns(warehouse)["inv_tokyo_2026_10"] == (None, None)  # none given


def test_a_warehouse_made_before_the_dunning_columns_gets_them(warehouse):
    from orchestration.warehouse.stripe import ensure_stripe_schema

    ensure_stripe_schema(warehouse)
    warehouse.execute(
        "ALTER TABLE meterbook_stripe.accounts_receivable DROP COLUMN first_failed_at"
    )
    warehouse.execute(
        "ALTER TABLE meterbook_stripe.accounts_receivable DROP COLUMN hosted_invoice_url"
    )
    ensure_stripe_schema(warehouse)
    assert dunning_columns(warehouse) == {}
