"""Credit notes in the ledger (SPEC 11): amounts, proportional tax, gapless numbers, what is
refused, and what the credit does (owed less, refund, wallet grant). Hand-checked figures."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from close_fixtures import catalog, drafts, invoice, line

from orchestration.billing.credit_notes.issue import CreditNoteRequest, issue_credit_note
from orchestration.billing.credit_notes.plan import CreditNoteError
from orchestration.billing.finalize import finalize_period, void_invoice
from orchestration.sql import connect
from orchestration.warehouse.stripe import ensure_stripe_schema

AFTER_OCT = datetime(2026, 11, 5, tzinfo=UTC)
ISSUED = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
LEDGER_TABLES = ("credit_notes", "credit_note_lines", "credit_note_numbers", "wallet_entries")


@pytest.fixture
def con(tmp_path):
    con = connect(tmp_path / "warehouse.duckdb")
    yield con
    con.close()


def finalized(con, october=None) -> dict[str, dict]:
    """The October drafts finalized; the ledger invoices by customer."""
    finalize_period(con, catalog(), "2026-10", AFTER_OCT, drafts=october or drafts(calls=1000))
    rows = con.execute("SELECT customer_id, document FROM meterbook_ledger.invoices").fetchall()
    return {customer: json.loads(doc) for customer, doc in rows}


def line_of(invoice: dict, kind: str, code: str | None = None) -> dict:
    return next(
        x
        for x in invoice["lines"]
        if x["kind"] == kind and code in (None, x["meter"], x["fee_code"])
    )


def credit(con, ref, *lines, reason="goodwill", refund=False, now=ISSUED, cn_id=None):
    request = CreditNoteRequest(
        invoice=ref,
        reason=reason,
        lines=tuple((lid, Decimal(amount)) for lid, amount in lines) or None,
        refund=refund,
        credit_note_id=cn_id,
    )
    return issue_credit_note(con, catalog(), request, now)


def counts(con) -> dict[str, int]:
    return {
        t: con.execute(f"SELECT count(*) FROM meterbook_ledger.{t}").fetchall()[0][0]
        for t in LEDGER_TABLES
    }


def pulled(con, invoice: dict, status: str, paid: str) -> None:
    """A payment status as the Stripe pull would have left it."""
    ensure_stripe_schema(con)
    con.execute(
        "INSERT INTO meterbook_stripe.accounts_receivable (invoice_id, number, close_month, "
        "customer_id, stripe_invoice_id, currency, currency_exponent, status, total, "
        "amount_due, amount_paid, amount_remaining, attempt_count, pulled_at) "
        "VALUES (?, ?, '2026-10', ?, 'in_test', ?, 2, ?, ?, ?, ?, ?, 0, ?)",
        [
            invoice["invoice_id"], invoice["number"], invoice["customer_id"],
            invoice["currency"], status, invoice["total"], invoice["amount_due"], paid,
            str(Decimal(invoice["amount_due"]) - Decimal(paid)), ISSUED,
        ],
    )  # fmt: skip


def test_a_partial_credit_on_two_lines_credits_them_and_their_share_of_tax(con):
    acme = finalized(con)["acme"]  # 1000 calls 100.00 + tokens 9.00 + fee 49.00, tax 20%
    assert (acme["subtotal"], acme["tax_total"], acme["total"]) == ("158.00", "31.60", "189.60")
    calls, fee = line_of(acme, "usage", "api_calls"), line_of(acme, "fixed_fee")

    note = credit(con, acme["invoice_id"], (calls["line_id"], "12.34"), (fee["line_id"], "49.00"))

    # 61.34 taxable credited of 158.00: tax 31.60 x 61.34 / 158.00 = 12.268 -> 12.27
    assert note["number"] == "CN-2026-000001"
    assert (note["subtotal"], note["tax_total"], note["total"]) == ("61.34", "12.27", "73.61")
    assert note["settlement"] == "reduce_due"
    assert note["issued_on"] == "2026-11-20"
    assert note["invoice_number"] == acme["number"]
    # the note's tax spread over its lines by amount: 12.27 x 12.34 / 61.34 = 2.468 -> 2.47
    assert [(x["line_id"], x["amount"], x["tax_amount"]) for x in note["lines"]] == [
        (calls["line_id"], "12.34", "2.47"),
        (fee["line_id"], "49.00", "9.80"),
    ]
    html = con.execute("SELECT html FROM meterbook_ledger.credit_notes").fetchall()[0][0]
    assert "CN-2026-000001" in html and "73.61" in html and "Acme &lt;Corp&gt;" in html


def test_tax_credited_cumulatively_adds_up_to_the_invoice_tax_in_jpy(con):
    tokyo = finalized(con)["tokyo"]  # 1000 calls x 0.35 = 350 JPY, tax 10% = 35
    assert (tokyo["subtotal"], tokyo["tax_total"]) == ("350", "35")
    calls = line_of(tokyo, "usage", "api_calls")["line_id"]

    first = credit(con, tokyo["invoice_id"], (calls, "101"))  # 35 x 101/350 = 10.1 -> 10
    second = credit(con, tokyo["invoice_id"], (calls, "100"))  # 35 x 201/350 = 20.1 -> 20
    rest = credit(con, tokyo["invoice_id"])  # the whole of what is left: 149, tax 35 - 20

    assert [(n["subtotal"], n["tax_total"], n["total"]) for n in (first, second, rest)] == [
        ("101", "10", "111"),
        ("100", "10", "110"),
        ("149", "15", "164"),
    ]
    assert [n["number"] for n in (first, second, rest)] == [
        "CN-2026-000001",
        "CN-2026-000002",
        "CN-2026-000003",
    ]
    with pytest.raises(CreditNoteError, match="nothing left to credit"):
        credit(con, tokyo["invoice_id"])


def test_a_credit_beyond_what_is_left_of_a_line_is_refused_in_one_line(con):
    acme = finalized(con)["acme"]
    fee = line_of(acme, "fixed_fee")["line_id"]
    credit(con, acme["invoice_id"], (fee, "10.00"))
    before = counts(con)

    with pytest.raises(CreditNoteError) as refused:
        credit(con, acme["invoice_id"], (fee, "39.01"))

    message = str(refused.value)
    assert "\n" not in message
    assert fee in message and "at most 39.00 USD more" in message
    assert counts(con) == before  # nothing written, no number used
    assert credit(con, acme["invoice_id"], (fee, "39.00"))["number"] == "CN-2026-000002"


@pytest.mark.parametrize(
    ("amount", "expected"),
    [("0", "must be positive"), ("1.001", "whole minor units"), ("-5", "must be positive")],
)
def test_amounts_that_are_not_money_are_refused(con, amount, expected):
    acme = finalized(con)["acme"]
    fee = line_of(acme, "fixed_fee")["line_id"]
    with pytest.raises(CreditNoteError, match=expected):
        credit(con, acme["invoice_id"], (fee, amount))


def test_unknown_lines_voided_and_unfinalized_invoices_are_refused(con):
    invoices = finalized(con)
    acme, beta = invoices["acme"], invoices["beta"]
    with pytest.raises(CreditNoteError, match="has no line li_nope"):
        credit(con, acme["invoice_id"], ("li_nope", "1.00"))
    with pytest.raises(CreditNoteError, match="only charges are credited"):
        credit(con, beta["invoice_id"], (line_of(beta, "usage", "api_calls")["line_id"], "1.00"))
    void_invoice(con, acme["invoice_id"], "duplicate", ISSUED)
    with pytest.raises(CreditNoteError, match=f"invoice {acme['number']} is void"):
        credit(con, acme["invoice_id"])
    with pytest.raises(CreditNoteError, match="inv_draft is not finalized"):
        credit(con, "inv_draft")
    with pytest.raises(CreditNoteError, match="needs a reason"):
        credit(con, beta["invoice_id"], reason="  ")
    assert counts(con)["credit_notes"] == 0


def test_an_invoice_is_found_by_its_number_too(con):
    beta = finalized(con)["beta"]
    assert credit(con, beta["number"])["invoice_id"] == beta["invoice_id"]


def test_discounts_bound_what_can_be_credited_and_a_whole_credit_reverses_them(con):
    usage = line("usage", "100.00", meter="api_calls", quantity=1000)
    discount = line("discount", "-10.00", fee_code="launch")
    october = {
        "period": "2026-10",
        "invoices": [invoice("acme", "sub_acme", [usage, discount], tax_rate="0.20")],
    }
    acme = finalized(con, october)["acme"]  # 90.00 + tax 18.00 = 108.00

    with pytest.raises(CreditNoteError, match="discounts leave 90.00 USD"):
        credit(con, acme["invoice_id"], (usage["line_id"], "100.00"))
    whole = credit(con, acme["invoice_id"])

    assert (whole["subtotal"], whole["tax_total"], whole["total"]) == ("90.00", "18.00", "108.00")
    assert [(x["kind"], x["amount"], x["tax_amount"]) for x in whole["lines"]] == [
        ("usage", "100.00", "20.00"),
        ("discount", "-10.00", "-2.00"),
    ]


def test_a_paid_invoice_is_refunded_or_credited_to_the_wallet(con):
    invoices = finalized(con)
    acme, beta = invoices["acme"], invoices["beta"]
    pulled(con, acme, "paid", acme["amount_due"])
    pulled(con, beta, "open", "0.00")
    fee = line_of(acme, "fixed_fee")["line_id"]

    refund = credit(con, acme["invoice_id"], (fee, "20.00"), refund=True)
    to_wallet = credit(con, acme["invoice_id"], (fee, "5.00"))
    with pytest.raises(CreditNoteError, match="is not paid .Stripe: open.: nothing to refund"):
        credit(con, beta["invoice_id"], refund=True)

    assert (refund["settlement"], refund["total"]) == ("refund", "24.00")
    assert (to_wallet["settlement"], to_wallet["total"]) == ("wallet", "6.00")
    grants = con.execute(
        "SELECT close_month, entry_type, grant_id, grant_kind, amount, granted_on, grant_source,"
        " customer_id, currency FROM meterbook_ledger.wallet_entries"
    ).fetchall()
    assert [(g[0], g[1], g[2], g[3], str(g[4].normalize()), str(g[5]), *g[6:]) for g in grants] == [
        ("2026-10", "grant", to_wallet["number"], "paid", "6", "2026-11-20", "credit_note",
         "acme", "USD"),
    ]  # fmt: skip


def test_a_refund_is_at_most_what_was_paid_less_earlier_refunds(con):
    acme = finalized(con)["acme"]  # 189.60, of which Stripe collected 150.00 (say, a wallet
    pulled(con, acme, "paid", "150.00")  # paid the rest)
    calls = line_of(acme, "usage", "api_calls")["line_id"]
    credit(con, acme["invoice_id"], (calls, "100.00"), refund=True)  # 120.00 refunded

    with pytest.raises(CreditNoteError, match="30.00 USD paid through Stripe is left to refund"):
        credit(con, acme["invoice_id"], refund=True)  # the rest is 69.60
    assert credit(con, acme["invoice_id"])["settlement"] == "wallet"
    assert counts(con)["credit_notes"] == 2


def test_an_unpaid_invoice_is_credited_at_most_what_it_still_owes(con):
    acme = finalized(con)["acme"]
    pulled(con, acme, "open", "150.00")  # partly paid: 39.60 owed
    with pytest.raises(CreditNoteError, match="still owes 39.60 USD"):
        credit(con, acme["invoice_id"], (line_of(acme, "fixed_fee")["line_id"], "49.00"))
    assert (
        credit(con, acme["invoice_id"], (line_of(acme, "fixed_fee")["line_id"], "33.00"))["total"]
        == "39.60"
    )


def test_numbers_are_gapless_per_year_of_issue(con):
    acme = finalized(con)["acme"]
    fee = line_of(acme, "fixed_fee")["line_id"]
    dec = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    jan = datetime(2027, 1, 1, 0, 1, tzinfo=UTC)
    numbers = [credit(con, acme["invoice_id"], (fee, "1.00"), now=when)["number"]
               for when in (ISSUED, dec, jan, jan)]  # fmt: skip
    assert numbers == ["CN-2026-000001", "CN-2026-000002", "CN-2027-000001", "CN-2027-000002"]
    assert con.execute(
        "SELECT number_year, number_seq FROM meterbook_ledger.credit_note_numbers ORDER BY 1, 2"
    ).fetchall() == [(2026, 1), (2026, 2), (2027, 1), (2027, 2)]


def test_issuing_the_same_credit_note_id_again_returns_it_once(con):
    acme = finalized(con)["acme"]
    fee = line_of(acme, "fixed_fee")["line_id"]
    first = credit(con, acme["invoice_id"], (fee, "5.00"), cn_id="cn_retry")
    again = credit(con, acme["invoice_id"], (fee, "5.00"), cn_id="cn_retry")
    assert again == first
    assert counts(con)["credit_notes"] == 1


def test_the_ledger_check_proves_credit_notes_add_up_and_finds_a_broken_one(con):
    from orchestration.billing.reconciliation import check_ledger

    acme = finalized(con)["acme"]
    fee = line_of(acme, "fixed_fee")["line_id"]
    note = credit(con, acme["invoice_id"], (fee, "5.00"))
    credit(con, acme["invoice_id"], (fee, "44.00"))
    assert check_ledger(con)[0]

    # a row edited behind the ledger's back: its line no longer adds up, the fee over-credited
    con.execute(
        "UPDATE meterbook_ledger.credit_note_lines SET amount = 6 WHERE credit_note_id = ?",
        [note["credit_note_id"]],
    )
    passed, metadata = check_ledger(con)
    assert not passed
    assert metadata["credit_notes_disagreeing"] == [
        "CN-2026-000001: lines 6.000000000000 and tax 1.000000000000 do not make "
        "5.000000000000 + 1.000000000000 = 6.000000000000",
        f"line {fee} credited 50.000000000000 of 49.000000000000 (last CN-2026-000002)",
    ]
