"""Kill the sync at every request in turn, re-run it, and check Stripe holds everything once.

For k = 1..N (N = the requests of a full run), Stripe stops answering at request k — before
executing it, or after executing it but before answering (the worst case: Stripe has the
object, we never learn its id). The run dies with `StripeUnavailable`; Stripe comes back and
the sync is run again on the same warehouse. Two re-run timings:

- right away: search does not see the dead run's objects yet; idempotency keys must save us;
- days later: keys have expired; lookups by metadata must save us.

Every time: exactly one Stripe invoice per ledger invoice, with exactly its items and total,
and a further run sends no request at all. The same for the credit-note push (after the
invoices are in Stripe): exactly one Stripe credit note per ledger credit note, one refund for
the one that refunds, each recorded in the warehouse.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from stripe_fixtures import (
    PERIOD,
    assert_stripe_matches_ledger,
    catalog,
    insert_credit_note,
    insert_standard_ledger,
)

from integrations.stripe.credit_notes import push_credit_notes
from integrations.stripe.errors import StripeUnavailable
from integrations.stripe.sync import sync_period
from orchestration.sql import connect
from orchestration.warehouse.ledger import ensure_ledger_schema


@pytest.fixture(scope="module")
def ledger():
    con = connect(":memory:")
    ensure_ledger_schema(con)
    insert_standard_ledger(con)
    yield con
    con.close()


def _full_run_requests(con, double, gateway) -> int:
    result = sync_period(con, catalog(), PERIOD, gateway)
    assert not result.failures
    count = len(double.log)
    double.reset()
    return count


def _killed_then_rerun(con, double, gateway, k: int, fault: str, later: bool) -> None:
    # A new Stripe account and a warehouse that never synced: the ledger is only read.
    con.execute("DROP SCHEMA IF EXISTS meterbook_stripe CASCADE")
    double.reset()
    double.search_lag = not later
    double.inject(k, fault)
    with pytest.raises(StripeUnavailable):
        sync_period(con, catalog(), PERIOD, gateway)
    double.revive()
    if later:
        double.expire_idempotency_keys()
        double.index_search()
    result = sync_period(con, catalog(), PERIOD, gateway)
    assert not result.failures, (k, fault, [o.error for o in result.failures])
    assert_stripe_matches_ledger(double)
    assert len(double.customers) == 3, (k, fault)
    sent = len(double.log)
    again = sync_period(con, catalog(), PERIOD, gateway)
    assert len(double.log) == sent and again.creates_sent == 0, (k, fault)


@pytest.mark.parametrize(
    ("later", "faults"),
    [(False, ("die_before", "die_after")), (True, ("die_after",))],
    ids=["rerun_at_once", "rerun_days_later"],
)
def test_killed_at_any_request_and_rerun_leaves_everything_exactly_once(
    ledger, stripe_double, gateway, later, faults
):
    # Days later, only a lost answer matters: what was answered is in the mapping already.
    ledger.execute("DROP SCHEMA IF EXISTS meterbook_stripe CASCADE")
    n = _full_run_requests(ledger, stripe_double, gateway)
    assert n >= 25  # 3 customers, 3 invoices, 10 items, 3 finalizations, 6 lookups
    for k in range(1, n + 1):
        for fault in faults:
            _killed_then_rerun(ledger, stripe_double, gateway, k, fault, later)


# -- credit notes -------------------------------------------------------------------------------
# One of each settlement: acme's refund and gulf's wallet credit (both paid in Stripe first),
# tokyo's lowered amount due. Each k starts from the same point, built once: the month's
# invoices in Stripe, two of them paid, the credit notes issued in the ledger and not pushed.

CREDIT_NOTES = [
    ("cn_acme", "CN-2026-000001", "inv_acme_2026_10", "refund",
     [("ln_acme_tokens", "LLM tokens (large)", "20.00", "3.33")]),
    ("cn_tokyo", "CN-2026-000002", "inv_tokyo_2026_10", "reduce_due",
     [("ln_tokyo_platform", "Platform fee", "1000", "100")]),
    ("cn_gulf", "CN-2026-000003", "inv_gulf_2026_10", "wallet",
     [("ln_gulf_platform", "Platform fee", "5.000", "0")]),
]  # fmt: skip
CREDIT_NOTE_TOTALS = {"cn_acme": 2333, "cn_tokyo": 1100, "cn_gulf": 5000}
NOW = datetime(2026, 11, 10, 9, 30, tzinfo=UTC)


@pytest.fixture
def issued(ledger, stripe_double, gateway) -> dict:
    """The double's state once the invoices are pushed and acme's and gulf's paid, with the
    credit notes issued in the ledger."""
    ledger.execute("DROP SCHEMA IF EXISTS meterbook_stripe CASCADE")
    assert not sync_period(ledger, catalog(), PERIOD, gateway, now=NOW).failures
    for our_id in ("inv_acme_2026_10", "inv_gulf_2026_10"):
        stripe_double.pay(stripe_double.invoices_for(our_id)[0]["id"])
    for note in CREDIT_NOTES:
        insert_credit_note(ledger, *note)
    yield stripe_double.snapshot()
    ledger.execute("DELETE FROM meterbook_ledger.credit_note_lines")
    ledger.execute("DELETE FROM meterbook_ledger.credit_notes")


def _back_to(issued: dict, con, double) -> int:
    """Stripe as it was when the credit notes were issued, and a warehouse that never pushed
    them; the number of requests so far."""
    for table in ("credit_notes", "refunds", "idempotency_generations"):
        con.execute(f"DELETE FROM meterbook_stripe.{table}")
    double.restore(issued)
    return len(double.log)


def _assert_credit_notes_once(con, double) -> None:
    by_ours = {}
    for credit_note in double.credit_notes.values():
        our_id = credit_note["metadata"]["meterbook_credit_note_id"]
        assert our_id not in by_ours, f"twin credit notes for {our_id}"
        by_ours[our_id] = credit_note
    assert {k: cn["total"] for k, cn in by_ours.items()} == CREDIT_NOTE_TOTALS
    [refund] = double.refunds.values()
    assert refund["metadata"]["meterbook_credit_note_id"] == "cn_acme"
    assert (refund["amount"], by_ours["cn_acme"]["refund"]) == (2333, refund["id"])
    assert by_ours["cn_gulf"]["out_of_band_amount"] == 5000
    tokyo = double.invoices_for("inv_tokyo_2026_10")[0]
    assert tokyo["amount_remaining"] == 7263 - 1100
    mapped = con.execute(
        "SELECT credit_note_id, stripe_credit_note_id FROM meterbook_stripe.credit_notes"
    ).fetchall()
    assert dict(mapped) == {k: cn["id"] for k, cn in by_ours.items()}
    refunds = con.execute("SELECT stripe_refund_id FROM meterbook_stripe.refunds").fetchall()
    assert refunds == [(refund["id"],)]


@pytest.mark.parametrize(
    ("later", "faults"),
    [(False, ("die_before", "die_after")), (True, ("die_after",))],
    ids=["rerun_at_once", "rerun_days_later"],
)
def test_credit_note_push_killed_at_any_request_and_rerun_leaves_each_once(
    ledger, issued, stripe_double, gateway, later, faults
):
    base = _back_to(issued, ledger, stripe_double)
    assert not push_credit_notes(ledger, gateway, now=NOW).failures
    n = len(stripe_double.log) - base
    assert n >= 11  # per note: list, read the invoice, create; the refund: list, create
    for k in range(1, n + 1):
        for fault in faults:
            stripe_double.inject(_back_to(issued, ledger, stripe_double) + k, fault)
            with pytest.raises(StripeUnavailable):
                push_credit_notes(ledger, gateway, now=NOW)
            stripe_double.revive()
            if later:
                stripe_double.expire_idempotency_keys()
            result = push_credit_notes(ledger, gateway, now=NOW)
            assert not result.failures, (k, fault, [o.error for o in result.failures])
            _assert_credit_notes_once(ledger, stripe_double)
            sent = len(stripe_double.log)
            again = push_credit_notes(ledger, gateway, now=NOW)
            assert len(stripe_double.log) == sent and again.creates_sent == 0, (k, fault)
