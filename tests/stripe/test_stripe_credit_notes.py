"""push_credit_notes against the double: amounts, settlements, exactly-once, lookups, failures.

Every test first pushes the standard ledger's invoices (acme USD 162.72 due, tokyo JPY 7,263,
gulf KWD 17.365), then writes credit notes straight into the ledger, as issuing would.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import requests
from stripe_fixtures import (
    API_KEY,
    INVOICES,
    PERIOD,
    catalog,
    insert_credit_note,
    insert_invoice,
    insert_standard_ledger,
    make_gateway,
)

from integrations.stripe.credit_notes import push_credit_notes
from integrations.stripe.errors import SyncError
from integrations.stripe.sync import sync_period

NOW = datetime(2026, 11, 10, 9, 30, tzinfo=UTC)
ACME, TOKYO, GULF = "inv_acme_2026_10", "inv_tokyo_2026_10", "inv_gulf_2026_10"
TWO_LINES = [
    ("ln_acme_tokens", "LLM tokens (large)", "20.00", "3.33"),
    ("ln_acme_platform", "Platform fee", "9.99", "1.67"),
]  # 29.99 + tax 5.00 = 34.99


@pytest.fixture
def synced(warehouse, gateway, stripe_double) -> dict[str, str]:
    """Our invoice id -> its Stripe invoice id, every invoice pushed and open."""
    insert_standard_ledger(warehouse)
    assert not sync_period(warehouse, catalog(), PERIOD, gateway, now=NOW).failures
    return {ours: stripe_double.invoices_for(ours)[0]["id"] for ours in (ACME, TOKYO, GULF)}


def push(con, gateway, **limits):
    return push_credit_notes(con, gateway, now=NOW, **limits)


def actions(result) -> dict[str, str]:
    return {o.number: o.action for o in result.outcomes}


def ours(stripe_object: dict) -> str:
    return stripe_object["metadata"]["meterbook_credit_note_id"]


def lines_of(credit_note: dict) -> list[tuple[str, int, int]]:
    return [
        (line["description"], line["quantity"], line["unit_amount"])
        for line in credit_note["lines"]["data"]
    ]


def test_a_partial_credit_note_on_two_lines_is_pushed_to_the_minor_unit(
    warehouse, gateway, stripe_double, synced
):
    insert_credit_note(warehouse, "cn_1", "CN-2026-000001", ACME, "reduce_due", TWO_LINES)
    result = push(warehouse, gateway)
    assert actions(result) == {"CN-2026-000001": "pushed"}
    [credit_note] = stripe_double.credit_notes_for(synced[ACME])
    assert lines_of(credit_note) == [
        ("LLM tokens (large)", 1, 2000),
        ("Platform fee", 1, 999),
        ("Tax", 1, 500),
    ]
    assert (credit_note["total"], credit_note["currency"]) == (3499, "usd")
    assert credit_note["memo"] == "Outage credit, ticket 4711"
    assert credit_note["metadata"] == {
        "meterbook_credit_note_id": "cn_1",
        "meterbook_credit_note_number": "CN-2026-000001",
        "meterbook_invoice_id": ACME,
    }
    assert credit_note["refund"] is None and credit_note["out_of_band_amount"] is None
    invoice = stripe_double.invoices[synced[ACME]]
    assert (invoice["status"], invoice["amount_remaining"]) == ("open", 16272 - 3499)
    [create] = [r for r in stripe_double.posts() if r.path == "/v1/credit_notes"]
    assert create.idempotency_key == "meterbook-v1:credit_note:cn_1"
    assert warehouse.execute(
        "SELECT credit_note_id, number, invoice_id, stripe_invoice_id, stripe_credit_note_id, "
        "stripe_refund_id, total_minor FROM meterbook_stripe.credit_notes"
    ).fetchall() == [("cn_1", "CN-2026-000001", ACME, synced[ACME], credit_note["id"], None, 3499)]


def test_yen_and_dinar_credit_notes_use_their_own_minor_units_in_number_order(
    warehouse, gateway, stripe_double, synced
):
    insert_credit_note(
        warehouse, "cn_b", "CN-2026-000002", GULF, "reduce_due",
        [("ln_gulf_tokens", "LLM tokens", "1.234", "0")],
    )  # fmt: skip
    insert_credit_note(
        warehouse, "cn_a", "CN-2026-000001", TOKYO, "reduce_due",
        [("ln_tokyo_tokens", "LLM tokens", "500", "50")],
    )  # fmt: skip
    result = push(warehouse, gateway)
    assert [o.number for o in result.outcomes] == ["CN-2026-000001", "CN-2026-000002"]
    [yen] = stripe_double.credit_notes_for(synced[TOKYO])
    assert lines_of(yen) == [("LLM tokens", 1, 500), ("Tax", 1, 50)]  # no tax line at zero:
    [dinar] = stripe_double.credit_notes_for(synced[GULF])
    assert lines_of(dinar) == [("LLM tokens", 1, 1234)]
    assert (yen["currency"], yen["total"], dinar["currency"], dinar["total"]) == (
        "jpy", 550, "kwd", 1234,
    )  # fmt: skip


def test_a_whole_credit_nets_the_discount_out_and_leaves_nothing_owed(
    warehouse, gateway, stripe_double, synced
):
    whole = [
        ("ln_acme_tokens", "LLM tokens (large)", "120.50", "0"),
        ("ln_acme_platform", "Platform fee", "49.00", "0"),
        ("ln_acme_launch20", "launch20: 20% off usage", "-33.90", "0"),
    ]
    insert_credit_note(warehouse, "cn_w", "CN-2026-000001", ACME, "reduce_due", whole)
    warehouse.execute(
        "UPDATE meterbook_ledger.credit_notes SET tax_total = 27.12, total = total + 27.12"
    )  # the tax of the whole invoice, on no line in particular
    assert actions(push(warehouse, gateway)) == {"CN-2026-000001": "pushed"}
    [credit_note] = stripe_double.credit_notes_for(synced[ACME])
    assert lines_of(credit_note) == [
        ("LLM tokens (large), net of launch20: 20% off usage", 1, 12050 - 3390),
        ("Platform fee", 1, 4900),
        ("Tax", 1, 2712),
    ]
    assert credit_note["total"] == 16272
    invoice = stripe_double.invoices[synced[ACME]]
    assert (invoice["status"], invoice["amount_remaining"], invoice["amount_paid"]) == (
        "paid", 0, 0,
    )  # fmt: skip


@pytest.mark.parametrize("faults", [("500", "500"), ("hang",)], ids=["500_twice", "answer_lost"])
def test_a_create_that_fails_and_is_retried_leaves_exactly_one_credit_note(
    warehouse, stripe_double, synced, sleeps, faults
):
    gateway = make_gateway(stripe_double.url, sleeps, timeout_seconds=0.2)
    stripe_double.hang_seconds = 0.6
    insert_credit_note(warehouse, "cn_1", "CN-2026-000001", ACME, "reduce_due", TWO_LINES)
    create = len(stripe_double.log) + 3  # after listing its credit notes and reading the invoice
    for offset, fault in enumerate(faults):
        stripe_double.inject(create + offset, fault)
    result = push(warehouse, gateway)
    assert actions(result) == {"CN-2026-000001": "pushed"}
    assert len(stripe_double.credit_notes) == 1
    assert stripe_double.invoices[synced[ACME]]["amount_remaining"] == 16272 - 3499
    attempts = [r for r in stripe_double.posts() if r.path == "/v1/credit_notes"]
    assert len(attempts) == len(faults) + 1
    assert {r.idempotency_key for r in attempts} == {"meterbook-v1:credit_note:cn_1"}
    assert result.creates_sent == len(faults) + 1


def test_a_refund_of_a_paid_invoice_is_one_refund_and_one_credit_note_linked_to_it(
    warehouse, gateway, stripe_double, synced
):
    stripe_double.pay(synced[ACME])
    insert_credit_note(warehouse, "cn_r", "CN-2026-000001", ACME, "refund", TWO_LINES)
    result = push(warehouse, gateway)
    assert actions(result) == {"CN-2026-000001": "pushed"}
    [refund] = stripe_double.refunds_for(synced[ACME])
    invoice = stripe_double.invoices[synced[ACME]]
    assert (refund["amount"], refund["currency"]) == (3499, "usd")
    assert refund["payment_intent"] == invoice["payment_intent"] and ours(refund) == "cn_r"
    [credit_note] = stripe_double.credit_notes_for(synced[ACME])
    assert (credit_note["refund"], credit_note["total"]) == (refund["id"], 3499)
    assert credit_note["out_of_band_amount"] is None
    assert stripe_double.charges[invoice["charge"]]["amount_refunded"] == 3499
    keys = {r.path: r.idempotency_key for r in stripe_double.posts()}
    assert keys["/v1/refunds"] == "meterbook-v1:refund:cn_r"
    assert warehouse.execute(
        "SELECT credit_note_id, stripe_refund_id, amount_minor, status FROM meterbook_stripe.refunds"
    ).fetchall() == [("cn_r", refund["id"], 3499, "succeeded")]
    assert result.outcomes[0].stripe_refund_id == refund["id"]


def test_a_wallet_credit_of_a_paid_invoice_is_out_of_band(
    warehouse, gateway, stripe_double, synced
):
    stripe_double.pay(synced[GULF])
    insert_credit_note(
        warehouse, "cn_w", "CN-2026-000001", GULF, "wallet",
        [("ln_gulf_platform", "Platform fee", "5.000", "0")],
    )  # fmt: skip
    assert actions(push(warehouse, gateway)) == {"CN-2026-000001": "pushed"}
    [credit_note] = stripe_double.credit_notes_for(synced[GULF])
    assert (credit_note["out_of_band_amount"], credit_note["total"]) == (5000, 5000)
    assert credit_note["refund"] is None
    assert stripe_double.refunds == {}
    assert stripe_double.invoices[synced[GULF]]["post_payment_credit_notes_amount"] == 5000


def test_a_rerun_sends_no_request_at_all(warehouse, gateway, stripe_double, synced):
    stripe_double.pay(synced[ACME])
    insert_credit_note(warehouse, "cn_1", "CN-2026-000001", ACME, "refund", TWO_LINES)
    insert_credit_note(
        warehouse, "cn_2", "CN-2026-000002", TOKYO, "reduce_due",
        [("ln_tokyo_platform", "Platform fee", "1000", "100")],
    )  # fmt: skip
    assert set(actions(push(warehouse, gateway)).values()) == {"pushed"}
    sent = len(stripe_double.log)
    again = push(warehouse, gateway)
    assert set(actions(again).values()) == {"already_synced"}
    assert len(stripe_double.log) == sent
    assert again.requests_sent == again.creates_sent == 0
    assert again.metadata()["already_synced"] == 2


def test_a_lost_mapping_is_found_again_in_stripe_instead_of_twinned(
    warehouse, gateway, stripe_double, synced
):
    stripe_double.pay(synced[ACME])
    insert_credit_note(warehouse, "cn_r", "CN-2026-000001", ACME, "refund", TWO_LINES)
    insert_credit_note(
        warehouse, "cn_t", "CN-2026-000002", TOKYO, "reduce_due",
        [("ln_tokyo_platform", "Platform fee", "1000", "100")],
    )  # fmt: skip
    push(warehouse, gateway)
    recorded = warehouse.execute(
        "SELECT * FROM meterbook_stripe.credit_notes ORDER BY number"
    ).fetchall()
    refunds = warehouse.execute("SELECT * FROM meterbook_stripe.refunds").fetchall()
    warehouse.execute("DELETE FROM meterbook_stripe.credit_notes")
    warehouse.execute("DELETE FROM meterbook_stripe.refunds")
    stripe_double.expire_idempotency_keys()  # days later: only the lookup can save us
    posts = len(stripe_double.posts())
    result = push(warehouse, gateway)
    assert actions(result) == {"CN-2026-000001": "pushed", "CN-2026-000002": "pushed"}
    assert len(stripe_double.posts()) == posts and result.creates_sent == 0
    assert len(stripe_double.credit_notes) == 2 and len(stripe_double.refunds) == 1
    again = warehouse.execute("SELECT * FROM meterbook_stripe.credit_notes ORDER BY number")
    assert [row[:7] for row in again.fetchall()] == [row[:7] for row in recorded]
    assert [
        row[:4] for row in warehouse.execute("SELECT * FROM meterbook_stripe.refunds").fetchall()
    ] == [row[:4] for row in refunds]


def test_a_credit_note_whose_invoice_is_not_in_stripe_fails_and_the_others_go(
    warehouse, gateway, stripe_double, synced
):
    insert_invoice(
        warehouse, "inv_acme_2026_09", "MB-2026-000000", *INVOICES[0][2:], close_month="2026-09"
    )
    insert_credit_note(
        warehouse, "cn_old", "CN-2026-000001", "inv_acme_2026_09", "reduce_due", TWO_LINES
    )
    insert_credit_note(warehouse, "cn_new", "CN-2026-000002", ACME, "reduce_due", TWO_LINES)
    result = push(warehouse, gateway)
    assert actions(result) == {"CN-2026-000001": "failed", "CN-2026-000002": "pushed"}
    error = result.failures[0].error
    assert error.startswith(
        "invoice MB-2026-000000 is not in Stripe yet: run `meterbook sync-stripe --period 2026-09`"
    )
    assert result.metadata()["errors"] == [f"CN-2026-000001: {error}"]
    assert [ours(cn) for cn in stripe_double.credit_notes.values()] == ["cn_new"]
    with pytest.raises(SyncError, match="CN-2026-000001 \\(cn_old\\): invoice MB-2026-000000"):
        result.raise_for_failures()


def test_a_credit_note_on_an_invoice_left_a_draft_in_stripe_waits_for_it(
    warehouse, gateway, stripe_double, synced
):
    warehouse.execute(  # as a run that died before finalizing it leaves the mapping
        "UPDATE meterbook_stripe.invoices SET pushed_at = NULL WHERE invoice_id = ?", [TOKYO]
    )
    insert_credit_note(
        warehouse, "cn_1", "CN-2026-000001", TOKYO, "reduce_due",
        [("ln_tokyo_platform", "Platform fee", "1000", "100")],
    )  # fmt: skip
    result = push(warehouse, gateway)
    assert "invoice MB-2026-000002 is not in Stripe yet" in result.failures[0].error
    assert stripe_double.credit_notes == {}


def test_a_credit_note_found_in_stripe_with_another_total_fails_and_is_not_twinned(
    warehouse, gateway, stripe_double, synced
):
    by_hand = {
        "invoice": synced[ACME],
        "lines[0][type]": "custom_line_item",
        "lines[0][description]": "typed in the Dashboard",
        "lines[0][quantity]": 1,
        "lines[0][unit_amount]": 3500,
        "metadata[meterbook_credit_note_id]": "cn_1",
    }
    auth = {"Authorization": f"Bearer {API_KEY}"}
    requests.post(stripe_double.url + "/v1/credit_notes", data=by_hand, headers=auth, timeout=5)
    insert_credit_note(warehouse, "cn_1", "CN-2026-000001", ACME, "reduce_due", TWO_LINES)
    result = push(warehouse, gateway)
    assert "totals 3500 usd, the ledger says 3499 usd" in result.failures[0].error
    assert len(stripe_double.credit_notes) == 1
    assert warehouse.execute("SELECT count(*) FROM meterbook_stripe.credit_notes").fetchall() == [
        (0,)
    ]


def test_a_credit_that_lowers_what_is_owed_fails_once_the_invoice_is_paid(
    warehouse, gateway, stripe_double, synced
):
    stripe_double.pay(synced[ACME])  # paid after the credit note was issued as reduce_due
    insert_credit_note(warehouse, "cn_1", "CN-2026-000001", ACME, "reduce_due", TWO_LINES)
    posts = len(stripe_double.posts())
    result = push(warehouse, gateway)
    assert actions(result) == {"CN-2026-000001": "failed"}
    assert "is paid in Stripe" in result.failures[0].error
    assert "issue it again as a refund or a wallet credit" in result.failures[0].error
    assert stripe_double.credit_notes == {} and len(stripe_double.posts()) == posts


def test_a_credit_beyond_what_stripe_has_left_is_not_sent(
    warehouse, gateway, stripe_double, synced
):
    big = [("ln_tokyo_tokens", "LLM tokens", "5603", "560")]
    insert_credit_note(warehouse, "cn_1", "CN-2026-000001", TOKYO, "reduce_due", big)
    insert_credit_note(warehouse, "cn_2", "CN-2026-000002", TOKYO, "reduce_due", big)
    result = push(warehouse, gateway)  # 6,163 twice on an invoice of 7,263
    assert actions(result) == {"CN-2026-000001": "pushed", "CN-2026-000002": "failed"}
    assert "credits 6163 minor units, Stripe has 1100 left to credit" in result.failures[0].error
    assert len(stripe_double.credit_notes) == 1


def test_a_refusal_moves_the_key_on_so_the_fixed_request_goes_through(
    warehouse, gateway, stripe_double, synced
):
    insert_credit_note(warehouse, "cn_1", "CN-2026-000001", ACME, "reduce_due", TWO_LINES)
    stripe_double.reject(
        lambda r: (r.method, r.path) == ("POST", "/v1/credit_notes"), "Credit notes are disabled"
    )
    failed = push(warehouse, gateway)
    assert "HTTP 400" in failed.failures[0].error and "disabled" in failed.failures[0].error
    stripe_double.rejections.clear()
    assert actions(push(warehouse, gateway)) == {"CN-2026-000001": "pushed"}
    keys = [r.idempotency_key for r in stripe_double.posts() if r.path == "/v1/credit_notes"]
    assert keys == ["meterbook-v1:credit_note:cn_1", "meterbook-v1:credit_note:cn_1:g1"]
    assert len(stripe_double.credit_notes) == 1


def test_limits_by_credit_note_or_invoice(warehouse, gateway, stripe_double, synced):
    insert_credit_note(warehouse, "cn_1", "CN-2026-000001", ACME, "reduce_due", TWO_LINES)
    insert_credit_note(
        warehouse, "cn_2", "CN-2026-000002", TOKYO, "reduce_due",
        [("ln_tokyo_platform", "Platform fee", "1000", "100")],
    )  # fmt: skip
    only = push(warehouse, gateway, credit_note_ids=["cn_2", "cn_gone"])
    assert actions(only) == {"CN-2026-000002": "pushed", "cn_gone": "failed"}
    assert "cn_gone is not in the ledger" in only.failures[0].error
    assert actions(push(warehouse, gateway, invoice_ids=[ACME])) == {"CN-2026-000001": "pushed"}
    with pytest.raises(ValueError, match="not both"):
        push(warehouse, gateway, invoice_ids=[ACME], credit_note_ids=["cn_1"])


def test_sync_period_pushes_the_months_credit_notes_after_its_invoices(
    warehouse, gateway, stripe_double
):
    insert_standard_ledger(warehouse)
    insert_invoice(
        warehouse, "inv_acme_2026_09", "MB-2026-000000", *INVOICES[0][2:], close_month="2026-09"
    )
    insert_credit_note(warehouse, "cn_1", "CN-2026-000001", ACME, "reduce_due", TWO_LINES)
    insert_credit_note(
        warehouse, "cn_9", "CN-2026-000002", "inv_acme_2026_09", "reduce_due", TWO_LINES
    )  # another month's: not this sync's
    result = sync_period(warehouse, catalog(), PERIOD, gateway, now=NOW)
    metadata = result.metadata()
    assert (metadata["pushed"], metadata["credit_notes"], metadata["credit_notes_pushed"]) == (
        3, 1, 1,
    )  # fmt: skip
    assert metadata["credit_notes_failed"] == 0 and metadata["credit_note_errors"] == []
    acme = stripe_double.invoices_for(ACME)[0]["id"]
    assert [ours(cn) for cn in stripe_double.credit_notes.values()] == ["cn_1"]
    assert stripe_double.credit_notes_for(acme)[0]["total"] == 3499
    sent = len(stripe_double.log)
    again = sync_period(warehouse, catalog(), PERIOD, gateway, now=NOW)
    assert len(stripe_double.log) == sent
    assert again.metadata()["credit_notes_already_synced"] == 1


def test_sync_period_reports_a_failed_credit_note_after_its_invoices(
    warehouse, gateway, stripe_double
):
    insert_standard_ledger(warehouse)
    insert_credit_note(warehouse, "cn_1", "CN-2026-000001", ACME, "refund", TWO_LINES)
    result = sync_period(warehouse, catalog(), PERIOD, gateway, now=NOW)
    assert not result.failures  # the invoices went; the refund needs a paid invoice
    assert result.metadata()["credit_notes_failed"] == 1
    assert (
        "settles a paid invoice (refund), but it is open"
        in (result.metadata()["credit_note_errors"][0])
    )
    with pytest.raises(SyncError, match="1 credit note\\(s\\) of 2026-10's invoices"):
        result.raise_for_failures()
