"""sync_period against the Stripe double: amounts, exactly-once, faults, voids."""

from __future__ import annotations

import socket

import pytest
import requests
from stripe_fixtures import (
    API_KEY,
    INVOICES,
    PERIOD,
    assert_stripe_matches_ledger,
    catalog,
    insert_invoice,
    insert_standard_ledger,
    make_gateway,
    set_status,
)

from integrations.stripe.client import RetryPolicy
from integrations.stripe.errors import StripeUnavailable, SyncError
from integrations.stripe.sync import sync_period
from orchestration.catalog.models import Catalog
from orchestration.sql import connect
from orchestration.warehouse.ledger import ensure_ledger_schema


@pytest.fixture
def ledger(warehouse):
    insert_standard_ledger(warehouse)
    return warehouse


def fresh_ledger():
    con = connect(":memory:")
    ensure_ledger_schema(con)
    insert_standard_ledger(con)
    return con


def actions(result) -> dict[str, str]:
    return {o.number: o.action for o in result.outcomes}


def test_full_run_pushes_every_invoice_to_the_minor_unit(ledger, gateway, stripe_double):
    result = sync_period(ledger, catalog(), PERIOD, gateway)
    assert set(actions(result).values()) == {"pushed"}
    assert_stripe_matches_ledger(stripe_double)
    customers = sorted(
        (c["metadata"]["meterbook_customer_id"], c["name"])
        for c in stripe_double.customers.values()
    )
    assert customers == [("acme", "Acme Corp"), ("gulf", "Gulf Trading"), ("tokyo", "Tokyo KK")]
    tokyo = stripe_double.invoices_for("inv_tokyo_2026_10")[0]
    assert (tokyo["collection_method"], tokyo["days_until_due"]) == ("send_invoice", 14)
    assert tokyo["due_date"] == tokyo["status_transitions"]["finalized_at"] + 14 * 86400
    acme = stripe_double.invoices_for("inv_acme_2026_10")[0]
    assert acme["collection_method"] == "charge_automatically"
    assert acme["auto_advance"] is True  # handed to Stripe for collection once finalized
    created = [r for r in stripe_double.posts() if r.path == "/v1/invoices"]
    assert all(r.params["auto_advance"] is False for r in created)  # never while building
    assert all(r.idempotency_key for r in stripe_double.posts())
    discount = [i for i in stripe_double.items_of(acme["id"]) if i["amount"] < 0]
    assert [(i["amount"], i["discountable"]) for i in discount] == [(-3390, False)]


def test_mapping_tables_record_every_stripe_object(ledger, gateway, stripe_double):
    sync_period(ledger, catalog(), PERIOD, gateway)
    mapped = ledger.execute(
        "SELECT invoice_id, stripe_status, expected_total_minor, stripe_total_minor, "
        "pushed_at IS NOT NULL FROM meterbook_stripe.invoices ORDER BY number"
    ).fetchall()
    assert mapped == [
        ("inv_acme_2026_10", "open", 16272, 16272, True),
        ("inv_tokyo_2026_10", "open", 7263, 7263, True),
        ("inv_gulf_2026_10", "open", 17365, 17365, True),
    ]
    items = ledger.execute("SELECT count(*) FROM meterbook_stripe.invoice_items").fetchall()
    assert items == [(len(stripe_double.items),)] == [(10,)]
    customers = ledger.execute("SELECT count(*) FROM meterbook_stripe.customers").fetchall()
    assert customers == [(3,)]


def test_a_second_run_sends_no_request_at_all(ledger, gateway, stripe_double):
    sync_period(ledger, catalog(), PERIOD, gateway)
    sent = len(stripe_double.log)
    again = sync_period(ledger, catalog(), PERIOD, gateway)
    assert set(actions(again).values()) == {"already_synced"}
    assert len(stripe_double.log) == sent
    assert again.requests_sent == again.creates_sent == 0


def test_a_rerun_days_later_with_a_lost_warehouse_finds_everything(ledger, gateway, stripe_double):
    sync_period(ledger, catalog(), PERIOD, gateway)
    stripe_double.expire_idempotency_keys()  # more than 24 hours later
    stripe_double.index_search()
    sent = len(stripe_double.log)
    rebuilt = fresh_ledger()
    result = sync_period(rebuilt, catalog(), PERIOD, gateway)
    assert not result.failures
    assert [r for r in stripe_double.log[sent:] if r.method == "POST"] == []
    assert_stripe_matches_ledger(stripe_double)
    assert len(stripe_double.customers) == 3


def test_a_rerun_right_after_with_a_lost_warehouse_relies_on_keys(ledger, gateway, stripe_double):
    stripe_double.search_lag = True  # search does not see the first run's objects yet
    sync_period(ledger, catalog(), PERIOD, gateway)
    result = sync_period(fresh_ledger(), catalog(), PERIOD, gateway)
    assert not result.failures
    assert_stripe_matches_ledger(stripe_double)
    assert len(stripe_double.customers) == 3


def test_429_500_and_timeouts_are_retried_with_backoff(ledger, stripe_double, sleeps):
    gateway = make_gateway(stripe_double.url, sleeps, timeout_seconds=0.2)
    stripe_double.hang_seconds = 0.6
    stripe_double.inject(2, "429")  # the first customer create
    stripe_double.inject(5, "500")
    stripe_double.inject(8, "hang")  # executed by Stripe, the answer never arrives in time
    result = sync_period(ledger, catalog(), PERIOD, gateway)
    assert not result.failures
    assert sleeps == [0.5, 0.5, 0.5]
    assert_stripe_matches_ledger(stripe_double)
    assert len(stripe_double.customers) == 3


def test_retries_are_bounded_and_a_failing_invoice_does_not_stop_the_others(
    ledger, stripe_double, sleeps
):
    gateway = make_gateway(stripe_double.url, sleeps, retry=RetryPolicy(max_attempts=3))
    for number in range(1, 7):  # the first two invoices each use up their 3 attempts
        stripe_double.inject(number, "500")
    result = sync_period(ledger, catalog(), PERIOD, gateway)
    assert actions(result) == {
        "MB-2026-000001": "failed",
        "MB-2026-000002": "failed",
        "MB-2026-000003": "pushed",
    }
    assert "after 3 attempts: HTTP 500" in result.failures[0].error
    assert sleeps == [0.5, 1.0, 0.5, 1.0]
    with pytest.raises(SyncError, match="MB-2026-000001"):
        result.raise_for_failures()
    assert set(actions(sync_period(ledger, catalog(), PERIOD, gateway)).values()) == {
        "pushed",
        "already_synced",
    }
    assert_stripe_matches_ledger(stripe_double)


def test_a_5xx_stripe_says_not_to_retry_is_not_retried(ledger, gateway, stripe_double, sleeps):
    stripe_double.inject(1, "500_final")
    result = sync_period(ledger, catalog(), PERIOD, gateway)
    assert actions(result)["MB-2026-000001"] == "failed"
    assert sleeps == []
    assert "HTTP 500 api_error" in result.failures[0].error


def test_a_4xx_stops_that_invoice_with_a_clear_error_and_not_the_others(
    ledger, gateway, stripe_double, sleeps
):
    stripe_double.reject(
        lambda r: r.path == "/v1/invoices" and r.params.get("currency") == "jpy",
        "Currency jpy is not enabled on this account",
    )
    result = sync_period(ledger, catalog(), PERIOD, gateway)
    assert actions(result)["MB-2026-000002"] == "failed"
    error = result.failures[0].error
    assert "POST /v1/invoices" in error and "HTTP 400" in error and "jpy is not enabled" in error
    assert sleeps == []  # a 4xx is not retried
    assert result.metadata()["errors"] == [f"MB-2026-000002: {error}"]
    assert_stripe_matches_ledger(stripe_double, ["inv_acme_2026_10", "inv_gulf_2026_10"])
    stripe_double.rejections.clear()
    again = sync_period(ledger, catalog(), PERIOD, gateway)
    assert actions(again)["MB-2026-000002"] == "pushed"
    assert_stripe_matches_ledger(stripe_double)


def test_an_invoice_of_a_customer_missing_from_the_catalog_fails_alone(
    ledger, gateway, stripe_double
):
    partial = Catalog(customers=[c for c in catalog().customers if c.id != "gulf"])
    result = sync_period(ledger, partial, PERIOD, gateway)
    assert actions(result)["MB-2026-000003"] == "failed"
    assert "'gulf' of invoice MB-2026-000003 is not in the catalog" in result.failures[0].error
    assert not stripe_double.invoices_for("inv_gulf_2026_10")


def test_a_voided_invoice_that_was_pushed_is_voided_in_stripe(ledger, gateway, stripe_double):
    sync_period(ledger, catalog(), PERIOD, gateway)
    set_status(ledger, "inv_acme_2026_10", "void")
    result = sync_period(ledger, catalog(), PERIOD, gateway)
    assert actions(result)["MB-2026-000001"] == "voided"
    assert stripe_double.invoices_for("inv_acme_2026_10")[0]["status"] == "void"
    voids = [r for r in stripe_double.posts() if r.path.endswith("/void")]
    assert len(voids) == 1 and voids[0].idempotency_key
    sent = len(stripe_double.log)
    assert actions(sync_period(ledger, catalog(), PERIOD, gateway))["MB-2026-000001"] == (
        "already_synced"
    )
    assert len(stripe_double.log) == sent


def test_a_voided_invoice_never_pushed_is_not_sent(ledger, gateway, stripe_double):
    set_status(ledger, "inv_acme_2026_10", "void")
    result = sync_period(ledger, catalog(), PERIOD, gateway)
    assert actions(result)["MB-2026-000001"] == "not_in_stripe"
    assert not stripe_double.invoices_for("inv_acme_2026_10")
    assert_stripe_matches_ledger(stripe_double, ["inv_tokyo_2026_10", "inv_gulf_2026_10"])


def test_a_draft_left_by_a_dead_run_is_deleted_when_the_ledger_voids_it(
    ledger, gateway, stripe_double
):
    stripe_double.inject(6, "die_after")  # an item of the first invoice: a half-built draft
    with pytest.raises(StripeUnavailable):
        sync_period(ledger, catalog(), PERIOD, gateway)
    stripe_double.revive()
    assert stripe_double.invoices_for("inv_acme_2026_10")[0]["status"] == "draft"
    set_status(ledger, "inv_acme_2026_10", "void")
    result = sync_period(ledger, catalog(), PERIOD, gateway)
    assert actions(result)["MB-2026-000001"] == "voided"
    assert not stripe_double.invoices_for("inv_acme_2026_10")
    acme_items = [
        i
        for i in stripe_double.items.values()
        if i["metadata"]["meterbook_invoice_id"] == "inv_acme_2026_10"
    ]
    assert acme_items == []
    assert_stripe_matches_ledger(stripe_double, ["inv_tokyo_2026_10", "inv_gulf_2026_10"])


def test_a_paid_invoice_voided_in_the_ledger_is_a_clear_failure(ledger, gateway, stripe_double):
    sync_period(ledger, catalog(), PERIOD, gateway)
    stripe_double.pay(stripe_double.invoices_for("inv_acme_2026_10")[0]["id"])
    set_status(ledger, "inv_acme_2026_10", "void")
    result = sync_period(ledger, catalog(), PERIOD, gateway)
    assert actions(result)["MB-2026-000001"] == "failed"
    assert "void in the ledger but paid in Stripe" in result.failures[0].error


def test_twins_already_in_stripe_are_reported_not_multiplied(ledger, gateway, stripe_double):
    auth = {"Authorization": f"Bearer {API_KEY}"}
    customer = requests.post(
        stripe_double.url + "/v1/customers",
        data={"metadata[meterbook_customer_id]": "acme"},
        headers=auth,
        timeout=5,
    ).json()["id"]
    for _ in range(2):
        requests.post(
            stripe_double.url + "/v1/invoices",
            data={"customer": customer, "metadata[meterbook_invoice_id]": "inv_acme_2026_10"},
            headers=auth,
            timeout=5,
        )
    result = sync_period(ledger, catalog(), PERIOD, gateway)
    assert actions(result)["MB-2026-000001"] == "failed"
    assert "Stripe holds 2 invoices for MB-2026-000001" in result.failures[0].error
    assert len(stripe_double.invoices_for("inv_acme_2026_10")) == 2


def test_a_foreign_item_on_our_draft_blocks_finalization(ledger, gateway, stripe_double):
    stripe_double.inject(4, "die_after")  # the first invoice is created, the run dies
    with pytest.raises(StripeUnavailable):
        sync_period(ledger, catalog(), PERIOD, gateway)
    stripe_double.revive()
    draft = stripe_double.invoices_for("inv_acme_2026_10")[0]
    requests.post(
        stripe_double.url + "/v1/invoiceitems",
        data={"customer": draft["customer"], "invoice": draft["id"], "amount": 999,
              "currency": "usd"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=5,
    )  # fmt: skip
    result = sync_period(ledger, catalog(), PERIOD, gateway)
    assert actions(result)["MB-2026-000001"] == "failed"
    assert "not one of its lines" in result.failures[0].error
    assert stripe_double.invoices_for("inv_acme_2026_10")[0]["status"] == "draft"


def test_unreachable_stripe_stops_the_run(ledger, sleeps):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = make_gateway(f"http://127.0.0.1:{port}", sleeps)
    with pytest.raises(StripeUnavailable, match="after 4 attempts"):
        sync_period(ledger, catalog(), PERIOD, gateway)
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_bad_period_is_refused(ledger, gateway):
    with pytest.raises(ValueError, match="YYYY-MM"):
        sync_period(ledger, catalog(), "2026-13", gateway)


def test_only_the_period_asked_for_is_pushed(warehouse, gateway, stripe_double):
    insert_standard_ledger(warehouse)
    other = INVOICES[0]
    insert_invoice(
        warehouse, "inv_acme_2026_09", "MB-2026-000000", *other[2:], close_month="2026-09"
    )
    result = sync_period(warehouse, catalog(), PERIOD, gateway)
    assert len(result.outcomes) == 3
    assert not stripe_double.invoices_for("inv_acme_2026_09")
