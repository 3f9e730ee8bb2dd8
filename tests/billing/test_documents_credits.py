"""Prepaid credits on the invoice document (SPEC 7): credit-priced lines in their two parts,
promotional credit and credit purchase lines, and the Credits block read from the wallet
ledger once per render."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "close"))

from close_fixtures import drafts, line  # noqa: E402
from test_documents_display import catalog_with  # noqa: E402

import orchestration.billing.documents.credits as credits_module  # noqa: E402
from orchestration.billing.documents import (  # noqa: E402
    CreditBook,
    render_documents,
    render_invoice_html,
)
from orchestration.billing.documents.lines import line_row  # noqa: E402
from orchestration.billing.documents.page import page_context  # noqa: E402
from orchestration.billing.documents.terms import document_terms  # noqa: E402
from orchestration.billing.documents.text import price_text  # noqa: E402
from orchestration.sql import connect  # noqa: E402
from orchestration.warehouse.ledger import ensure_ledger_schema  # noqa: E402

WELCOME, PREPAID = "g_acme_welcome", "g_acme_prepaid"


def credit_priced(credit_qty="8", list_qty="8", amount="20.00", currency="USD", **kw) -> dict:
    billable = str(Decimal(credit_qty) + Decimal(list_qty))
    return {
        **line("usage", amount, currency, meter="api_calls", quantity=billable, **kw),
        "unit_price": "1.5",
        "credit_quantity": credit_qty,
        "credit_price": "1",
        "list_quantity": list_qty,
    }


def acme_invoice(status: str = "draft") -> dict:
    """usage 20.00 (8 at 1.00 credit price + 8 at 1.50), fee 10.00, promotional credit
    -15.00, 50.00 of prepaid credits bought; tax 20% of 15.00; 18.00 paid from credits."""
    lines = [
        credit_priced(),
        line("fixed_fee", "10.00", fee_code="platform", quantity=1),
        line(
            "promotional_credit",
            "-15.00",
            fee_code=WELCOME,
            description=f"Promotional credit ({WELCOME})",
        ),
        line(
            "credit_purchase",
            "50.00",
            fee_code=PREPAID,
            description=f"Prepaid credits bought ({PREPAID})",
        ),
    ]
    return {
        "invoice_id": "inv_acme_2026_10",
        "number": None if status == "draft" else "MB-2026-000007",
        "status": status,
        "customer_id": "acme",
        "subscription_id": "sub_acme",
        "currency": "USD",
        "period_start": "2026-10-01",
        "period_end": "2026-11-01",
        "subtotal": "65.00",
        "discount_total": "0.00",
        "tax_total": "3.00",
        "total": "68.00",
        "credits_applied": "18.00",
        "amount_due": "50.00",
        "lines": lines,
    }


def entry(month, entry_type, grant, kind, amount, invoice_id=None, provisional=False) -> dict:
    return {
        "close_month": month,
        "entry_type": entry_type,
        "customer_id": "acme",
        "grant_id": grant,
        "grant_kind": kind,
        "amount": Decimal(amount),
        "invoice_id": invoice_id,
        "provisional": provisional,
    }


def acme_ledger(october_provisional: bool = True) -> list[dict]:
    oct_ = {"provisional": october_provisional}
    inv = "inv_acme_2026_10"
    return [
        entry("2026-09", "grant", WELCOME, "promotional", "100"),
        entry("2026-09", "draw", WELCOME, "promotional", "-40", "inv_acme_2026_09"),
        entry("2026-10", "grant", PREPAID, "paid", "50", inv, **oct_),  # bought here: no draw
        entry("2026-10", "draw", WELCOME, "promotional", "-8", inv, **oct_),  # the credit part
        entry("2026-10", "draw", WELCOME, "promotional", "-7", inv, **oct_),
        entry("2026-10", "draw", PREPAID, "paid", "-18", inv, **oct_),
        entry("2026-11", "draw", WELCOME, "promotional", "-5", "inv_acme_2026_11", True),
    ]


def test_a_credit_priced_line_shows_both_parts():
    cat = catalog_with()
    row = line_row(credit_priced(), "USD", cat, None)
    assert row.notes == ("8 at 1.00 (credit price) + 8 at 1.50",)
    assert (row.billable, row.unit_price, row.amount) == ("16", "1.5", "USD 20.00")
    all_credit = line_row(credit_priced("16", "0", "16.00"), "USD", cat, None)
    assert all_credit.notes == ("16 at 1.00 (credit price)",)
    all_list = line_row(credit_priced("0", "16", "24.00"), "USD", cat, None)
    assert all_list.notes == ("16 at 1.50",)
    yen = line_row(credit_priced("60", "40", "120", "JPY"), "JPY", cat, None)
    assert yen.notes == ("60 at 1 (credit price) + 40 at 1.5",)
    decimals = catalog_with({"display_decimals": 2})
    assert line_row(credit_priced(), "USD", decimals, None).notes == (
        "8.00 at 1.00 (credit price) + 8.00 at 1.50",
    )


def test_a_credit_priced_line_of_a_meter_billed_in_thousands_keeps_its_unit_note():
    cat = catalog_with(meters={"api_calls": {"unit": {"divide_by": "1000", "rounding": "up"}}})
    row = line_row(credit_priced(), "USD", cat, None)
    assert row.notes == (
        "8 at 1.00 (credit price) + 8 at 1.50",
        "Quantities in units of 1,000 API calls",
    )


def test_prices_keep_every_digit_and_at_least_the_minor_ones():
    assert [price_text(p, 2) for p in ("1", "1.5", "0.002", "12.345")] == [
        "1.00",
        "1.50",
        "0.002",
        "12.345",
    ]
    assert (price_text("0.35", 0), price_text("2", 0), price_text(None, 2)) == ("0.35", "2", "")


def test_promotional_credit_and_credit_purchase_lines_name_their_grant():
    cat = catalog_with()
    promo, bought = acme_invoice()["lines"][2:]
    promo_row, bought_row = line_row(promo, "USD", cat, None), line_row(bought, "USD", cat, None)
    assert (promo_row.label, promo_row.tags, promo_row.description) == (
        "Promotional credit",
        (),  # labelled by its kind, like a discount: no second "credit" tag
        f"Credit grant {WELCOME}",
    )
    assert (bought_row.label, bought_row.tags, bought_row.description) == (
        "Prepaid credits",
        (),
        f"Credit grant {PREPAID}, bought on this invoice (not taxed)",
    )
    assert (promo_row.amount, bought_row.amount) == ("USD -15.00", "USD 50.00")
    assert promo_row.period == "2026-10-01 to 2026-10-31" and promo_row.quantity == ""


def test_the_credits_block_of_a_draft_counts_its_provisional_draws():
    invoice = acme_invoice()
    summary = CreditBook(acme_ledger()).summary(invoice, "2026-10")
    # what the ledger drew on this invoice is what the invoice says it drew
    promo_lines = -sum(
        Decimal(x["amount"]) for x in invoice["lines"] if x["kind"] == "promotional_credit"
    )
    assert summary.drawn == {
        "promotional": promo_lines,
        "paid": Decimal(invoice["credits_applied"]),
    }
    assert summary.left == {"promotional": Decimal(45), "paid": Decimal(32)}  # 2026-11 left out
    cat = catalog_with()
    context = page_context(
        invoice, "2026-10", cat, cat.customer("acme"), document_terms(None, None), None, summary
    )
    assert context["credits"] == [
        ("Promotional credits drawn", "USD 15.00"),
        ("Prepaid credits drawn", "USD 18.00"),
        ("Promotional balance left", "USD 45.00"),
        ("Prepaid balance left", "USD 32.00"),
    ]
    assert context["credits_note"] == (
        "Balances as the 2026-10 close left them, provisional until the invoice is issued"
    )
    labels = [label for label, _ in context["totals"]]
    assert labels == [
        "Subtotal",
        "Tax (20% of subtotal less prepaid credits bought)",  # 20% of 15.00 is 3.00
        "Total",
        "Prepaid credits applied",
    ]
    assert context["amount_due"] == "USD 50.00"


def test_an_issued_invoice_reads_only_permanent_entries():
    book = CreditBook(acme_ledger(october_provisional=False))
    summary = book.summary(acme_invoice("finalized"), "2026-10")
    assert summary.left == {"promotional": Decimal(45), "paid": Decimal(32)}
    assert not summary.provisional and summary.note() == "Balances as the 2026-10 close left them"
    # drafts of a later close never move an issued document
    stale = CreditBook(acme_ledger(october_provisional=True)).summary(
        acme_invoice("finalized"), "2026-10"
    )
    assert stale.left == {"promotional": Decimal(60)} and stale.drawn == {}
    assert stale.rows() == [
        ("Promotional credits drawn", "USD 0.00"),
        ("Promotional balance left", "USD 60.00"),
    ]


def test_the_page_shows_the_credits_block():
    cat = catalog_with()
    invoice = acme_invoice()
    page = render_invoice_html(
        invoice, "2026-10", cat, credits=CreditBook(acme_ledger()).summary(invoice, "2026-10")
    )
    assert '<td colspan="2" class="label">Credits</td>' in page
    assert '<tr><td>Prepaid balance left</td><td class="num">USD 32.00</td></tr>' in page
    assert '<tr><td>Prepaid credits applied</td><td class="num">USD -18.00</td></tr>' in page
    assert "8 at 1.00 (credit price) + 8 at 1.50" in page
    assert f"Credit grant {PREPAID}, bought on this invoice (not taxed)" in page
    assert "computed once on the subtotal less prepaid credits bought, which are not taxed." in page


def test_a_customer_without_wallet_entries_gets_the_page_it_had_before():
    cat = catalog_with()
    book = CreditBook(acme_ledger())
    for invoice in drafts()["invoices"]:  # beta and tokyo have no entries
        if invoice["customer_id"] == "acme":
            continue
        assert book.summary(invoice, "2026-10") is None
        with_book = render_invoice_html(
            invoice, "2026-10", cat, credits=book.summary(invoice, "2026-10")
        )
        assert with_book == render_invoice_html(invoice, "2026-10", cat)
        assert "Credits</td>" not in with_book and "prepaid credits bought" not in with_book
    # a wallet that starts after this close is not shown either
    assert CreditBook(acme_ledger()[-1:]).summary(acme_invoice(), "2026-10") is None


def test_render_documents_reads_the_wallet_ledger_once(tmp_path, monkeypatch):
    con = connect(":memory:")
    ensure_ledger_schema(con)
    con.execute(
        "INSERT INTO meterbook_ledger.wallet_entries (close_month, seq, entry_id, entry_type, "
        "customer_id, grant_id, grant_kind, amount, entry_date, currency, invoice_id, "
        "finalized_at) VALUES "
        "('2026-09', 1, 'we_1', 'grant', 'acme', 'g_acme_welcome', 'promotional', 100, "
        "DATE '2026-09-01', 'USD', NULL, TIMESTAMPTZ '2026-10-05 00:00:00+00')"
    )
    reads = []
    real = credits_module.ledger_entries
    monkeypatch.setattr(credits_module, "ledger_entries", lambda c: reads.append(1) or real(c))
    doc = drafts()
    doc["invoices"].append(acme_invoice())
    paths = render_documents(con, catalog_with(), "2026-10", tmp_path, document=doc, pdf=False)
    assert len(reads) == 1 and len(paths) == 4
    pages = {p.name: p.read_text() for p in paths}
    plain = pages["draft-" + doc["invoices"][1]["invoice_id"] + ".html"]  # beta: no wallet
    assert plain == render_invoice_html(doc["invoices"][1], "2026-10", catalog_with())
    acme = pages["draft-inv_acme_2026_10.html"]
    assert '<tr><td>Promotional balance left</td><td class="num">USD 100.00</td></tr>' in acme
    con.close()


def test_a_thousand_invoices_of_one_customer_sum_its_wallet_once():
    book = CreditBook(acme_ledger() * 50)
    invoices = [{**acme_invoice(), "invoice_id": f"inv_{n}"} for n in range(1000)]
    summaries = [book.summary(inv, "2026-10") for inv in invoices]
    assert len(book._balances) == 1  # one sum per (customer, close, draft or issued)
    assert summaries[-1].left == {"promotional": Decimal(45 * 50), "paid": Decimal(32 * 50)}
    assert summaries[-1].drawn == {}  # none of these invoices drew anything
