"""A credit note as a document: the JSON `meterbook credit-note --json` prints (kept in the
ledger) and its HTML page. Pure rendering; amounts carry the currency's minor digits."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from orchestration.billing.credit_notes.plan import CreditNotePlan
from orchestration.billing.money import format_money
from orchestration.billing.templating import template_environment

_ENV = template_environment(Path(__file__).parent / "templates")

SETTLEMENT_TEXT = {
    "reduce_due": "lowers what the invoice owes",
    "refund": "refunded to the payment method",
    "wallet": "added to the customer's prepaid credits",
}


def credit_note_document(
    *,
    credit_note_id: str,
    number: str,
    invoice: dict[str, Any],
    issued_on: date,
    reason: str,
    settlement: str,
    plan: CreditNotePlan,
) -> dict[str, Any]:
    """`invoice`: the ledger invoice's SPEC 5 document (ids, customer, currency)."""
    currency = invoice["currency"]

    def money(amount):
        return format_money(amount, currency)

    return {
        "credit_note_id": credit_note_id,
        "number": number,
        "invoice_id": invoice["invoice_id"],
        "invoice_number": invoice["number"],
        "customer_id": invoice["customer_id"],
        "subscription_id": invoice["subscription_id"],
        "currency": currency,
        "issued_on": issued_on.isoformat(),
        "reason": reason,
        "settlement": settlement,
        "subtotal": money(plan.subtotal),
        "tax_total": money(plan.tax_total),
        "total": money(plan.total),
        "lines": [
            {
                "line_id": line.line_id,
                "kind": line.kind,
                "description": line.description,
                "amount": money(line.amount),
                "tax_amount": money(line.tax_amount),
            }
            for line in plan.lines
        ],
    }


def render_credit_note_html(document: dict[str, Any], customer_name: str | None) -> str:
    return _ENV.get_template("credit_note.html").render(
        note=document,
        settlement=SETTLEMENT_TEXT[document["settlement"]],
        customer_name=customer_name or document["customer_id"],
    )
