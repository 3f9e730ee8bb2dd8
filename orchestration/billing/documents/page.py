"""The invoice page: one self-contained HTML document from a SPEC 5 invoice (pure).

Jinja2 with autoescaping writes it, so every text from the invoice or the catalog is
escaped; the charts are data: PNGs, so the file opens anywhere and prints without a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestration.billing.documents.chart import Chart, usage_meters
from orchestration.billing.documents.credits import CreditSummary
from orchestration.billing.documents.lines import line_row, span
from orchestration.billing.documents.terms import Terms, document_terms
from orchestration.billing.documents.text import quantity_text
from orchestration.billing.money import round_money
from orchestration.billing.templating import template_environment
from orchestration.catalog.models import Catalog, Customer

TEMPLATES = Path(__file__).parent / "templates"
_ENV = template_environment(TEMPLATES)


def render_invoice_html(
    invoice: dict[str, Any],
    close_month: str,
    catalog: Catalog,
    terms: Terms | None = None,
    charts: Sequence[Chart] = (),
    trial_end: date | None = None,
    credits: CreditSummary | None = None,
) -> str:
    """The invoice page. `terms` default to a draft's (no issue date); `trial_end` is the
    subscription's first day out of trial, for the "trial" label of zero lines before it;
    `credits` is the customer's wallet as this close left it (none: no Credits block)."""
    customer = catalog.find_customer(invoice["customer_id"])
    terms = terms or document_terms(customer, None)
    context = page_context(invoice, close_month, catalog, customer, terms, trial_end, credits)
    meters = len(usage_meters(invoice))
    note = f"the {len(charts)} meters billing the most, of {meters}" if meters > len(charts) else ""
    later = invoice["status"] == "draft" and meters > 0 and not charts
    return _ENV.get_template("invoice.html").render(
        **context, charts=list(charts), chart_note=note, charts_when_issued=later
    )


def page_context(
    invoice: dict[str, Any],
    close_month: str,
    catalog: Catalog,
    customer: Customer | None,
    terms: Terms,
    trial_end: date | None,
    credits: CreditSummary | None = None,
) -> dict[str, Any]:
    status = invoice["status"]
    number = invoice.get("number")
    currency = invoice["currency"]
    return {
        "heading": f"Invoice {number}" if number else "Draft invoice",
        "status": status,
        "status_class": status if status in ("draft", "finalized", "void") else "draft",
        "invoice": invoice,
        "period_text": span(invoice["period_start"], invoice["period_end"]),
        "close_month": close_month,
        "seller": catalog.settings.seller,
        "customer": customer,
        "customer_name": customer.name if customer and customer.name else invoice["customer_id"],
        "terms": terms,
        "rows": [line_row(line, currency, catalog, trial_end) for line in invoice["lines"]],
        "totals": _totals(invoice, customer),
        "amount_due": f"{currency} {invoice['amount_due']}",
        "credits": credits.rows() if credits else None,
        "credits_note": credits.note() if credits else None,
        "credits_bought": any(line["kind"] == "credit_purchase" for line in invoice["lines"]),
        "source": "the ledger (finalized, frozen)" if number else "the current draft",
    }


def _totals(invoice: dict[str, Any], customer: Customer | None) -> list[tuple[str, str]]:
    currency = invoice["currency"]
    rows = [("Subtotal", invoice["subtotal"])]
    if Decimal(invoice["discount_total"]) != 0:
        rows.append(("Discounts included above", f"-{invoice['discount_total']}"))
    rows.append((_tax_label(invoice, customer), invoice["tax_total"]))
    rows.append(("Total", invoice["total"]))
    if Decimal(invoice.get("credits_applied") or 0) != 0:
        rows.append(("Prepaid credits applied", f"-{invoice['credits_applied']}"))
    return [(label, f"{currency} {value}") for label, value in rows]


def _tax_label(invoice: dict[str, Any], customer: Customer | None) -> str:
    # the catalog's rate is shown only when it is the one this invoice was taxed at
    if customer is None:
        return "Tax"
    subtotal, rate = Decimal(invoice["subtotal"]), customer.tax_rate
    # SPEC 3.4: credit_purchase lines are in the subtotal but not taxed
    bought = sum(
        (Decimal(line["amount"]) for line in invoice["lines"] if line["kind"] == "credit_purchase"),
        Decimal(0),
    )
    if round_money((subtotal - bought) * rate, invoice["currency"]) != Decimal(
        invoice["tax_total"]
    ):
        return "Tax"
    base = "subtotal less prepaid credits bought" if bought else "subtotal"
    return f"Tax ({quantity_text(rate * 100)}% of {base})"
