"""SPEC 5 formatting: money with exactly the minor digits, plain quantities, the text table."""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pytest

from orchestration.billing.invoice_json import (
    decimal_text,
    format_invoices_table,
    invoices_document,
    money_text,
)


@pytest.mark.parametrize(
    ("amount", "exponent", "text"),
    [
        ("59.000000000000", 2, "59.00"),
        ("5603.000000000000", 0, "5603"),
        ("14.295000000000", 3, "14.295"),
        ("-0.000000000000", 2, "0.00"),
        ("-33.070000000000", 2, "-33.07"),
        ("0E-12", 0, "0"),
    ],
)
def test_money_has_exactly_the_minor_digits(amount, exponent, text):
    assert money_text(Decimal(amount), exponent) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("4500.000000000000", "4500"),
        ("48.500000000000", "48.5"),
        ("0E-12", "0"),
        ("1E+3", "1000"),
        ("0.000000000001", "0.000000000001"),
        (None, None),
    ],
)
def test_quantities_are_plain_decimals(value, text):
    assert decimal_text(None if value is None else Decimal(value)) == text


def test_a_month_never_closed_has_no_invoices():
    with duckdb.connect() as con:
        assert invoices_document(con, "2026-10") == {"period": "2026-10", "invoices": []}


def test_the_period_is_checked():
    with duckdb.connect() as con, pytest.raises(ValueError, match="YYYY-MM"):
        invoices_document(con, "October")


def test_the_table_shows_lines_and_totals():
    doc = {
        "period": "2026-10",
        "invoices": [
            {
                "invoice_id": "inv_1",
                "number": None,
                "status": "draft",
                "customer_id": "acme",
                "subscription_id": "sub_1",
                "currency": "USD",
                "period_start": "2026-10-01",
                "period_end": "2026-11-01",
                "subtotal": "68.60",
                "discount_total": "0.00",
                "tax_total": "13.72",
                "total": "82.32",
                "credits_applied": "0.00",
                "amount_due": "82.32",
                "lines": [
                    {
                        "kind": "usage",
                        "description": "LLM tokens (large)",
                        "quantity": "4500.000000000000",
                        "period_start": "2026-10-01",
                        "period_end": "2026-11-01",
                        "amount": "9.00",
                    },
                    {
                        "kind": "commitment_true_up",
                        "description": "Minimum spend",
                        "quantity": None,
                        "period_start": "2026-10-01",
                        "period_end": "2026-11-01",
                        "amount": "59.60",
                    },
                ],
            }
        ],
    }
    text = format_invoices_table(doc)
    assert "Invoices for 2026-10: 1" in text
    assert "inv_1  [draft]  acme / sub_1  USD" in text
    assert "LLM tokens (large)" in text and "4500" in text and "59.60" in text
    assert "4500.000000000000" not in text  # the table shows quantities as a reader does
    assert text.rstrip().splitlines()[-1].split() == ["amount", "due", "82.32"]
