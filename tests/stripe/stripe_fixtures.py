"""A small ledger and catalog for the Stripe tests: USD with a discount, JPY, KWD.

Amounts are written by hand (already rounded, as the close stage freezes them); totals are
added up here only to keep each fixture consistent with its lines.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import duckdb

from integrations.stripe.client import RetryPolicy, StripeConfig, StripeGateway
from orchestration.catalog.models import Catalog, Customer

API_KEY = "sk_test_meterbookDoubleKey_5f3c9a1e7b2d"
PERIOD = "2026-10"
FINALIZED_AT = datetime(2026, 11, 4, 9, 0, tzinfo=UTC)


# a gateway to the Stripe double at `url` whose retries record their sleeps instead of sleeping
def make_gateway(url: str, sleeps: list[float], **options) -> StripeGateway:
    options.setdefault("timeout_seconds", 5.0)
    options.setdefault("retry", RetryPolicy(max_attempts=4))
    return StripeGateway(
        StripeConfig(api_key=API_KEY, api_base=url, **options), sleep=sleeps.append
    )


def catalog() -> Catalog:
    return Catalog(
        customers=[
            Customer(id="acme", name="Acme Corp", email="billing@acme.test", currency="USD"),
            Customer(
                id="tokyo",
                name="Tokyo KK",
                currency="JPY",
                timezone="Asia/Tokyo",
                collection_method="send_invoice",
                days_until_due=14,
            ),
            Customer(id="gulf", name="Gulf Trading", currency="KWD", timezone="Asia/Kuwait"),
        ]
    )


# (invoice_id, number, customer, currency, tax, [(line_id, kind, description, amount, qty)])
INVOICES = [
    (
        "inv_acme_2026_10",
        "MB-2026-000001",
        "acme",
        "USD",
        "27.12",
        [
            ("ln_acme_tokens", "usage", "LLM tokens (large)", "120.50", "120500"),
            ("ln_acme_platform", "fixed_fee", "Platform fee", "49.00", "1"),
            ("ln_acme_launch20", "discount", "launch20: 20% off usage", "-33.90", None),
        ],
    ),
    (
        "inv_tokyo_2026_10",
        "MB-2026-000002",
        "tokyo",
        "JPY",
        "660",
        [
            ("ln_tokyo_tokens", "usage", "LLM tokens", "5603", "5603"),
            ("ln_tokyo_platform", "fixed_fee", "Platform fee", "1000", "1"),
        ],
    ),
    (
        "inv_gulf_2026_10",
        "MB-2026-000003",
        "gulf",
        "KWD",
        "0",
        [
            ("ln_gulf_tokens", "usage", "LLM tokens", "14.295", "14295"),
            ("ln_gulf_platform", "fixed_fee", "Platform fee", "5.000", "1"),
            ("ln_gulf_promo", "discount", "promo: 10% off", "-1.930", None),
        ],
    ),
]
EXPONENTS = {"USD": 2, "JPY": 0, "KWD": 3}


def insert_invoice(
    con: duckdb.DuckDBPyConnection,
    invoice_id: str,
    number: str,
    customer_id: str,
    currency: str,
    tax: str,
    lines: list[tuple],
    *,
    credits: str = "0",
    close_month: str = PERIOD,
) -> None:
    subtotal = sum((Decimal(line[3]) for line in lines), Decimal(0))
    total = subtotal + Decimal(tax)
    amount_due = total - Decimal(credits)
    start, end = date(2026, 10, 1), date(2026, 11, 1)
    document = {"invoice_id": invoice_id, "number": number, "status": "finalized"}
    con.execute(
        "INSERT INTO meterbook_ledger.invoices VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?)",
        [
            invoice_id, number, close_month, customer_id, f"sub_{customer_id}", currency,
            EXPONENTS.get(currency, 2), start, end, subtotal, Decimal(tax), total,
            Decimal(credits), amount_due, FINALIZED_AT, json.dumps(document),
        ],
    )  # fmt: skip
    for position, (line_id, kind, description, amount, quantity) in enumerate(lines, 1):
        con.execute(
            "INSERT INTO meterbook_ledger.invoice_lines VALUES "
            "(?, ?, ?, ?, NULL, NULL, NULL, ?, ?, ?, ?, NULL, NULL, ?)",
            [
                invoice_id, line_id, position, kind, description, start, end,
                None if quantity is None else Decimal(quantity), Decimal(amount),
            ],
        )  # fmt: skip
    set_status(con, invoice_id, "finalized")


def set_status(con: duckdb.DuckDBPyConnection, invoice_id: str, status: str) -> None:
    con.execute(
        "INSERT INTO meterbook_ledger.invoice_status_changes VALUES (?, ?, ?, NULL)",
        [invoice_id, status, FINALIZED_AT],
    )


def insert_standard_ledger(con: duckdb.DuckDBPyConnection) -> None:
    for invoice in INVOICES:
        insert_invoice(con, *invoice)


def expected_minor(invoice_id: str) -> dict[str, int]:
    """Our ref -> minor units, written independently of the product's conversion."""
    (_, _, _, currency, tax, lines) = next(i for i in INVOICES if i[0] == invoice_id)
    scale = 10 ** EXPONENTS[currency]
    refs = {line[0]: int(Decimal(line[3]) * scale) for line in lines}
    if Decimal(tax):
        refs["meterbook:tax"] = int(Decimal(tax) * scale)
    return refs


def assert_stripe_matches_ledger(double, invoice_ids: list[str] | None = None) -> None:
    """Exactly one finalized Stripe invoice per ledger invoice, with exactly its items."""
    for invoice_id, number, _, currency, _, _ in INVOICES:
        if invoice_ids is not None and invoice_id not in invoice_ids:
            continue
        found = double.invoices_for(invoice_id)
        assert len(found) == 1, f"{number}: {len(found)} Stripe invoices"
        stripe_invoice = found[0]
        items = double.items_of(stripe_invoice["id"])
        refs = [item["metadata"]["meterbook_line_id"] for item in items]
        assert len(refs) == len(set(refs)), f"{number}: twin items {refs}"
        amounts = {item["metadata"]["meterbook_line_id"]: item["amount"] for item in items}
        expected = expected_minor(invoice_id)
        assert amounts == expected, number
        assert stripe_invoice["status"] == "open", number
        assert stripe_invoice["currency"] == currency.lower()
        assert stripe_invoice["total"] == sum(expected.values())
        assert stripe_invoice["metadata"]["meterbook_invoice_number"] == number


ISSUED_AT = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)


def insert_credit_note(
    con: duckdb.DuckDBPyConnection,
    credit_note_id: str,
    number: str,
    invoice_id: str,
    settlement: str,
    lines: list[tuple[str, str, str, str]],
    *,
    reason: str = "Outage credit, ticket 4711",
) -> None:
    """A ledger credit note as billing/credit_notes/issue.py keeps it; `lines` are
    (line_id, description, amount before tax, its tax), written by hand like the invoices."""
    invoice_number, customer_id, currency = con.execute(
        "SELECT number, customer_id, currency FROM meterbook_ledger.invoices WHERE invoice_id = ?",
        [invoice_id],
    ).fetchall()[0]
    subtotal = sum((Decimal(line[2]) for line in lines), Decimal(0))
    tax = sum((Decimal(line[3]) for line in lines), Decimal(0))
    document = {"credit_note_id": credit_note_id, "number": number, "settlement": settlement}
    con.execute(
        "INSERT INTO meterbook_ledger.credit_notes VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            credit_note_id, number, invoice_id, invoice_number, customer_id, f"sub_{customer_id}",
            currency, EXPONENTS.get(currency, 2), ISSUED_AT.date(), ISSUED_AT, reason, settlement,
            subtotal, tax, subtotal + tax, json.dumps(document), "<html></html>",
        ],
    )  # fmt: skip
    for position, (line_id, description, amount, line_tax) in enumerate(lines, 1):
        con.execute(
            "INSERT INTO meterbook_ledger.credit_note_lines VALUES (?, ?, ?, 'usage', ?, ?, ?)",
            [credit_note_id, line_id, position, description, Decimal(amount), Decimal(line_tax)],
        )
