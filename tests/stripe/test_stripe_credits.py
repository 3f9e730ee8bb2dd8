"""Prepaid credits (SPEC 7) in Stripe: every ledger line is one item, whatever its kind, so a
promotional credit goes as a negative item and a credit purchase as a positive one (neither
carries a Stripe tax: tax is one item of its own, computed by meterbook), and paid credits as
the `credits` item. The Stripe invoice totals the ledger's amount_due to the minor unit."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from stripe_fixtures import PERIOD, catalog, insert_invoice

from integrations.stripe.errors import SyncError
from integrations.stripe.payloads import CREDITS_REF, TAX_REF, invoice_item_params, plan_invoice
from integrations.stripe.records import LedgerInvoice, LedgerLine
from integrations.stripe.sync import sync_period
from orchestration.catalog.models import Customer

ACME = Customer(id="acme", name="Acme", currency="USD")
TOKYO = Customer(id="tokyo", currency="JPY", timezone="Asia/Tokyo")

# (line_id, kind, description, amount, quantity): usage, a fee, a promotional credit drawn
# before tax, 50.00 of prepaid credits bought (not taxed); tax 20% of 15.00 = 3.00, total
# 68.00, 18.00 paid from prepaid credits (at most total - purchases), 50.00 due
USD_LINES = [
    ("ln_usage", "usage", "Emails: 8 at 1.00 (credit price) + 8 at 1.50", "20.00", "16"),
    ("ln_fee", "fixed_fee", "Platform fee", "10.00", "1"),
    ("ln_promo", "promotional_credit", "Promotional credit (g_welcome)", "-15.00", None),
    ("ln_bought", "credit_purchase", "Prepaid credits bought (g_prepaid)", "50.00", None),
]
# the same in yen: tax 10% of 1,500 = 150, total 6,650, 1,650 paid from credits, 5,000 due
JPY_LINES = [
    ("ln_usage", "usage", "Emails", "2000", "16"),
    ("ln_fee", "fixed_fee", "Platform fee", "1000", "1"),
    ("ln_promo", "promotional_credit", "Promotional credit (g_welcome)", "-1500", None),
    ("ln_bought", "credit_purchase", "Prepaid credits bought (g_prepaid)", "5000", None),
]


def ledger_invoice(currency: str, lines: list[tuple], tax: str, credits: str) -> LedgerInvoice:
    ledger_lines = tuple(
        LedgerLine(
            line_id=line_id,
            position=position,
            kind=kind,
            description=description,
            period_start=date(2026, 10, 1),
            period_end=date(2026, 11, 1),
            quantity=None if quantity is None else Decimal(quantity),
            amount=Decimal(amount),
        )
        for position, (line_id, kind, description, amount, quantity) in enumerate(lines, 1)
    )
    subtotal = sum((line.amount for line in ledger_lines), Decimal(0))
    total = subtotal + Decimal(tax)
    return LedgerInvoice(
        invoice_id="inv_credits",
        number="MB-2026-000009",
        close_month=PERIOD,
        customer_id="acme",
        subscription_id="sub_acme",
        currency=currency,
        period_start=date(2026, 10, 1),
        period_end=date(2026, 11, 1),
        subtotal=subtotal,
        tax_total=Decimal(tax),
        total=total,
        credits_applied=Decimal(credits),
        amount_due=total - Decimal(credits),
        status="finalized",
        lines=ledger_lines,
    )


@pytest.mark.parametrize(
    ("currency", "lines", "tax", "credits", "customer", "expected", "due"),
    [
        (
            "USD",
            USD_LINES,
            "3.00",
            "18.00",
            ACME,
            [2000, 1000, -1500, 5000, 300, -1800],
            5000,
        ),
        ("JPY", JPY_LINES, "150", "1650", TOKYO, [2000, 1000, -1500, 5000, 150, -1650], 5000),
    ],
)
def test_credit_lines_are_items_and_stripe_totals_the_amount_due(
    currency, lines, tax, credits, customer, expected, due
):
    invoice = ledger_invoice(currency, lines, tax, credits)
    assert invoice.subtotal == Decimal(lines[0][3]) * Decimal("3.25")  # 65.00 | 6500
    plan = plan_invoice(invoice, customer)  # the self-check passes: nothing raised
    assert [(i.ref, i.kind) for i in plan.items] == [
        ("ln_usage", "usage"),
        ("ln_fee", "fixed_fee"),
        ("ln_promo", "promotional_credit"),
        ("ln_bought", "credit_purchase"),
        (TAX_REF, "tax"),
        (CREDITS_REF, "credits"),
    ]
    assert [i.amount_minor for i in plan.items] == expected
    assert sum(expected) == plan.total_minor == due


def test_credit_items_carry_no_stripe_tax_nor_discount():
    invoice = ledger_invoice("USD", USD_LINES, "3.00", "18.00")
    plan = plan_invoice(invoice, ACME)
    params = {i.ref: invoice_item_params(i, invoice, "cus_1", "in_1") for i in plan.items}
    promo, bought = params["ln_promo"], params["ln_bought"]
    assert (promo["amount"], bought["amount"]) == (-1500, 5000)
    assert promo["metadata"]["meterbook_kind"] == "promotional_credit"
    assert bought["metadata"]["meterbook_kind"] == "credit_purchase"
    assert bought["description"] == "Prepaid credits bought (g_prepaid)"
    for item in params.values():
        assert item["discountable"] is False
        assert not {"tax_rates", "tax_behavior", "tax_code"} & item.keys()
    # the tax item is the ledger's tax on 15.00, not on the 65.00 subtotal with the purchase
    assert params[TAX_REF]["amount"] == 300 != int(invoice.subtotal * Decimal("0.20") * 100)


def test_an_invoice_with_credits_that_does_not_add_up_is_refused():
    invoice = ledger_invoice("USD", USD_LINES, "3.00", "18.00")
    wrong_due = LedgerInvoice(**{**invoice.__dict__, "amount_due": Decimal("68.00")})
    with pytest.raises(SyncError, match="total - credits is 50.00, the ledger says 68.00"):
        plan_invoice(wrong_due, ACME)
    no_purchase = LedgerInvoice(**{**invoice.__dict__, "lines": invoice.lines[:3]})
    with pytest.raises(SyncError, match="the sum of its lines is 15.00"):
        plan_invoice(no_purchase, ACME)


def test_an_invoice_with_credits_is_pushed_to_the_minor_unit(warehouse, gateway, stripe_double):
    insert_invoice(
        warehouse,
        "inv_credits",
        "MB-2026-000009",
        "acme",
        "USD",
        "3.00",
        USD_LINES,
        credits="18.00",
    )
    result = sync_period(warehouse, catalog(), PERIOD, gateway)
    assert [(o.number, o.action) for o in result.outcomes] == [("MB-2026-000009", "pushed")]
    [stripe_invoice] = stripe_double.invoices_for("inv_credits")
    items = {
        i["metadata"]["meterbook_line_id"]: i["amount"]
        for i in stripe_double.items_of(stripe_invoice["id"])
    }
    assert items == {
        "ln_usage": 2000,
        "ln_fee": 1000,
        "ln_promo": -1500,
        "ln_bought": 5000,
        TAX_REF: 300,
        CREDITS_REF: -1800,
    }
    assert stripe_invoice["total"] == 5000 and stripe_invoice["status"] == "open"
    mapped = warehouse.execute(
        "SELECT expected_total_minor, stripe_total_minor FROM meterbook_stripe.invoices"
    ).fetchall()
    assert mapped == [(5000, 5000)]
