"""The month's draft invoices as SPEC 5 JSON, and as a table for people.

Reads the marts `fct_invoices` / `fct_invoice_lines`. Amounts are printed with exactly the
currency's minor digits, quantities and prices as plain decimals without trailing zeros.
Invoices are ordered by customer, subscription and period, lines by their `line_no`, so the
same close gives byte-identical JSON.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import duckdb

from orchestration.billing.documents.text import display_quantity
from orchestration.billing.month import BillingMonth
from orchestration.warehouse.models import model_exists, with_refs

_INVOICES = """
SELECT invoice_id, number, status, customer_id, subscription_id, currency, currency_exponent,
       period_start, period_end, subtotal, discount_total, tax_total, total, credits_applied,
       amount_due
FROM {{ ref('fct_invoices') }}
WHERE close_month = $period AND ($customer IS NULL OR customer_id = $customer)
ORDER BY customer_id, subscription_id, period_start, invoice_id
"""
_LINES = """
SELECT invoice_id, line_id, kind, meter, fee_code, CAST(group_key AS VARCHAR), description,
       period_start, period_end, quantity, billable_quantity, unit_price, amount, event_count,
       CAST(tiers AS VARCHAR), credit_quantity, credit_price
FROM {{ ref('fct_invoice_lines') }}
WHERE close_month = $period AND ($customer IS NULL OR customer_id = $customer)
ORDER BY invoice_id, line_no
"""
_TIER_DECIMALS = ("from", "up_to", "quantity", "unit_price", "flat_fee")


def money_text(amount: Decimal, exponent: int) -> str:
    """Exactly `exponent` digits after the point (the amount is already rounded)."""
    text = format(Decimal(amount).quantize(Decimal(1).scaleb(-exponent)), "f")
    return text[1:] if text.startswith("-") and not Decimal(text) else text  # no "-0.00"


def decimal_text(value: Decimal | str | None) -> str | None:
    """A plain decimal without exponent or trailing zeros: 4.500000000000 -> "4.5"."""
    if value is None:
        return None
    normal = Decimal(value).normalize()
    return format(normal if normal else Decimal(0), "f")


def _tiers(text: str | None, exponent: int) -> list[dict] | None:
    if text is None:
        return None
    tiers = []
    for tier in json.loads(text):
        out: dict[str, Any] = {"tier": tier["tier"]}
        out.update({k: decimal_text(tier[k]) for k in _TIER_DECIMALS})
        out["amount"] = money_text(Decimal(tier["amount"]), exponent)
        tiers.append(out)
    return tiers


def _line(row: tuple, exponent: int) -> dict:
    (_, line_id, kind, meter, fee_code, group, description, start, end) = row[:9]
    (quantity, billable, unit_price, amount, event_count, tiers, credit_qty, credit_price) = row[9:]
    line = {
        "line_id": line_id,
        "kind": kind,
        "meter": meter,
        "fee_code": fee_code,
        "group": json.loads(group) if group is not None else None,
        "description": description,
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "quantity": decimal_text(quantity),
        "billable_quantity": decimal_text(billable),
        "unit_price": decimal_text(unit_price),
        "amount": money_text(amount, exponent),
        "event_count": event_count,
        "tiers": _tiers(tiers, exponent),
    }
    if credit_qty is not None:  # SPEC 7: both parts of a credit-priced line, on that line only
        line["credit_quantity"] = decimal_text(credit_qty)
        line["credit_price"] = decimal_text(credit_price)
        line["list_quantity"] = decimal_text(Decimal(billable) - credit_qty)
    return line


def _invoice(row: tuple, lines: list[tuple]) -> dict:
    (invoice_id, number, status, customer_id, subscription_id, currency, exponent) = row[:7]
    (start, end, subtotal, discount_total, tax_total, total, credits, due) = row[7:]
    return {
        "invoice_id": invoice_id,
        "number": number,
        "status": status,
        "customer_id": customer_id,
        "subscription_id": subscription_id,
        "currency": currency,
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "subtotal": money_text(subtotal, exponent),
        "discount_total": money_text(discount_total, exponent),
        "tax_total": money_text(tax_total, exponent),
        "total": money_text(total, exponent),
        "credits_applied": money_text(credits, exponent),
        "amount_due": money_text(due, exponent),
        "lines": [_line(line, exponent) for line in lines],
    }


def invoices_document(
    con: duckdb.DuckDBPyConnection, close_month: str, customer_id: str | None = None
) -> dict:
    """SPEC 5: the draft invoices of close month `close_month` ('YYYY-MM'), optionally of one
    customer. A month that was never closed has no invoices."""
    BillingMonth.parse(close_month)
    if not all(model_exists(con, m) for m in ("fct_invoices", "fct_invoice_lines")):
        return {"period": close_month, "invoices": []}
    params = {"period": close_month, "customer": customer_id}
    invoices = con.execute(with_refs(_INVOICES), params).fetchall()
    by_invoice: dict[str, list[tuple]] = {}
    for line in con.execute(with_refs(_LINES), params).fetchall():
        by_invoice.setdefault(line[0], []).append(line)
    return {
        "period": close_month,
        "invoices": [_invoice(row, by_invoice.get(row[0], [])) for row in invoices],
    }


def format_invoices_table(doc: dict) -> str:
    """The invoices as aligned text: one block per invoice, its lines, then the totals."""
    invoices = doc.get("invoices", [])
    out = [f"Invoices for {doc.get('period')}: {len(invoices)}"]
    for inv in invoices:
        out += ["", *_invoice_block(inv)]
    return "\n".join(out) + "\n"


def _invoice_block(inv: dict) -> list[str]:
    number = inv.get("number") or inv["invoice_id"]
    head = (
        f"{number}  [{inv['status']}]  {inv['customer_id']} / {inv['subscription_id']}  "
        f"{inv['currency']}  {inv['period_start']} .. {inv['period_end']}"
    )
    rows = [
        (
            line["kind"],
            line["description"],
            f"{line['period_start']} .. {line['period_end']}",
            display_quantity(line["quantity"]),  # at most 4 decimals; the JSON keeps all
            line["amount"],
        )
        for line in inv["lines"]
    ]
    width = max([len(r[1]) for r in rows] + [11])
    body = [f"  {k:<18} {d:<{width}}  {p:<24} {q:>14} {a:>14}" for k, d, p, q, a in rows]
    pad = 18 + width + 24 + 14 + 8
    totals = [
        ("subtotal", inv["subtotal"]),
        ("discounts", inv["discount_total"]),
        ("tax", inv["tax_total"]),
        ("total", inv["total"]),
        ("credits applied", inv["credits_applied"]),
        ("amount due", inv["amount_due"]),
    ]
    return [head, *body, *(f"{label:>{pad}} {value:>14}" for label, value in totals)]
