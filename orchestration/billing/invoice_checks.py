"""The arithmetic of an invoice, re-added: lines to subtotal, tax, total and amount due, and
every amount in the currency's minor units. `invoice_problems` is a pure function over a
SPEC 5 invoice; finalization refuses an invoice it finds a problem in, and the asset check
runs it over every draft of the month (`check_invoice_totals`).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import duckdb

from orchestration.billing.ledger import invoices_with_ledger
from orchestration.billing.line_kinds import line_kinds
from orchestration.billing.money import minor_exponent, round_money
from orchestration.catalog.models import Catalog

AMOUNT_FIELDS = (
    "subtotal",
    "discount_total",
    "tax_total",
    "total",
    "credits_applied",
    "amount_due",
)


def invoice_problems(invoice: dict[str, Any], tax_rate: Decimal | None = None) -> list[str]:
    """What does not add up on one SPEC 5 invoice; empty when it reconciles.

    SPEC 3.4: subtotal = sum of all lines (discount lines included, so after discounts);
    discount_total = minus the sum of the discount lines; total = subtotal + tax;
    amount_due = total - credits_applied; every amount has the currency's minor digits.
    With `tax_rate`, tax must also be the taxable lines (seed line_kinds: all but credit
    purchases) times the rate, rounded once. Paid credits never exceed the total less the
    credit purchases, so amount_due is never below what was bought (SPEC 7).
    """
    currency = invoice.get("currency", "")
    problems = _digit_problems(invoice, minor_exponent(currency))
    if problems:
        return problems
    amount = {name: Decimal(invoice[name]) for name in AMOUNT_FIELDS}
    lines = invoice.get("lines", [])
    line_sum = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
    discounts = -sum(
        (Decimal(line["amount"]) for line in lines if line["kind"] == "discount"), Decimal(0)
    )
    expected = {
        "subtotal": line_sum,
        "discount_total": discounts,
        "total": amount["subtotal"] + amount["tax_total"],
        "amount_due": amount["total"] - amount["credits_applied"],
    }
    if tax_rate is not None:
        taxable = sum((Decimal(ln["amount"]) for ln in lines if _taxable(ln["kind"])), Decimal(0))
        expected["tax_total"] = round_money(taxable * tax_rate, currency)
    for name, value in expected.items():
        if amount[name] != value:
            problems.append(f"{name} is {invoice[name]} but should be {value}")
    purchases = sum(
        (Decimal(ln["amount"]) for ln in lines if ln["kind"] == "credit_purchase"), Decimal(0)
    )
    if amount["credits_applied"] < 0 or amount["credits_applied"] > max(
        amount["total"] - purchases, Decimal(0)
    ):
        problems.append(
            f"credits_applied {invoice['credits_applied']} is outside 0 to the total less "
            f"the credit purchases ({amount['total'] - purchases})"
        )
    return problems


def _taxable(kind: str) -> bool:
    found = line_kinds().get(kind)
    return found.taxable if found else True


def _digit_problems(invoice: dict[str, Any], exponent: int) -> list[str]:
    problems = []
    for name in AMOUNT_FIELDS:
        if not _has_digits(invoice.get(name), exponent):
            problems.append(f"{name} {invoice.get(name)!r} does not have {exponent} decimals")
    for position, line in enumerate(invoice.get("lines", [])):
        if not _has_digits(line.get("amount"), exponent):
            problems.append(
                f"line {position} ({line.get('line_id')}) amount {line.get('amount')!r} "
                f"does not have {exponent} decimals"
            )
    return problems


def _has_digits(text: Any, exponent: int) -> bool:
    if not isinstance(text, str):
        return False
    try:
        value = Decimal(text)
    except ArithmeticError:
        return False
    return value.is_finite() and -value.as_tuple().exponent == exponent and "e" not in text.lower()


def check_invoice_totals(
    document: dict[str, Any], tax_rates: dict[str, Decimal] | None = None
) -> tuple[bool, dict[str, Any]]:
    """Asset check: every invoice of a SPEC 5 document adds up (lines, discounts, tax, due).

    `tax_rates` maps customer_id to its rate; given, tax is re-computed too.
    """
    failures = {}
    for invoice in document.get("invoices", []):
        rate = (tax_rates or {}).get(invoice["customer_id"])
        problems = invoice_problems(invoice, rate)
        if problems:
            failures[invoice["invoice_id"]] = problems
    metadata = {
        "period": document.get("period"),
        "invoices": len(document.get("invoices", [])),
        "invoices_failing": len(failures),
        "failures": dict(sorted(failures.items())[:20]),
    }
    return not failures, metadata


def check_invoices(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, close_month: str
) -> tuple[bool, dict[str, Any]]:
    """Asset check over `invoices_with_ledger`: drafts are also re-taxed at the catalog rate
    (a finalized invoice keeps the rate it was issued with, so only its arithmetic is checked)."""
    document = invoices_with_ledger(con, close_month)
    rates = {c.id: c.tax_rate for c in catalog.customers}
    failures = {}
    for invoice in document["invoices"]:
        rate = rates.get(invoice["customer_id"]) if invoice["status"] == "draft" else None
        problems = invoice_problems(invoice, rate)
        if problems:
            failures[invoice["invoice_id"]] = problems
    return not failures, {
        "period": close_month,
        "invoices": len(document["invoices"]),
        "invoices_failing": len(failures),
        "failures": dict(sorted(failures.items())[:20]),
    }
