"""The invoice page: one self-contained HTML document from a SPEC 5 invoice (pure)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from string import Template
from typing import Any

from orchestration.billing import line_kinds
from orchestration.billing.documents.chart import usage_chart_svg
from orchestration.billing.documents.text import escape, quantity_text
from orchestration.billing.documents.usage import DailyPoint, DailyUsage
from orchestration.billing.money import round_money
from orchestration.catalog.models import Catalog, Customer

TEMPLATE = Path(__file__).parent / "templates" / "invoice.html"
_ADDITIVE = ("count", "sum", "count_unique")


def render_invoice_html(
    invoice: dict[str, Any], close_month: str, customer: Customer | None, charts_html: str = ""
) -> str:
    """The invoice page. Pure: every value from the invoice or the catalog is escaped."""
    status = invoice["status"]
    number = invoice.get("number")
    heading = f"Invoice {number}" if number else "Draft invoice"
    values = {
        "title": heading,
        "heading": heading,
        "status": status,
        "status_class": status if status in ("draft", "finalized", "void") else "draft",
        "invoice_id": invoice["invoice_id"],
        "period_text": _span(invoice["period_start"], invoice["period_end"]),
        "close_month": close_month,
        "customer_name": (customer.name if customer and customer.name else invoice["customer_id"]),
        "subscription_id": invoice["subscription_id"],
        "currency": invoice["currency"],
        "source": "the ledger (finalized, frozen)" if number else "the current draft",
    }
    page = {key: escape(value) for key, value in values.items()}
    page["customer_details"] = _customer_details(invoice, customer)
    page["line_rows"] = "\n".join(
        _line_rows(line, invoice["currency"]) for line in invoice["lines"]
    )
    page["total_rows"] = _total_rows(invoice, customer)
    page["charts"] = charts_html
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(page)


def _span(start: str, end: str) -> str:
    """A half-open [start, end) as the days a reader expects: start to the last day."""
    last = date.fromisoformat(end) - timedelta(days=1)
    return f"{start} to {last.isoformat()}"


def _customer_details(invoice: dict[str, Any], customer: Customer | None) -> str:
    parts = [f"Customer id: {escape(invoice['customer_id'])}"]
    if customer and customer.email:
        parts.append(escape(customer.email))
    if customer:
        parts.append(f"Time zone: {escape(customer.timezone)}")
    return "<br>".join(parts)


def _line_rows(line: dict[str, Any], currency: str) -> str:
    kind = line_kinds.label(line["kind"])
    unit_price = line.get("unit_price")
    cells = [
        f'<td><div class="kind">{escape(kind)}</div>{escape(line.get("description"))}'
        f"{_trace(line)}</td>",
        f'<td class="period">{escape(_span(line["period_start"], line["period_end"]))}</td>',
        f'<td class="num">{escape(quantity_text(line.get("quantity")))}</td>',
        f'<td class="num">{escape(quantity_text(line.get("billable_quantity")))}</td>',
        f'<td class="num">{escape(quantity_text(unit_price))}</td>',
        f'<td class="num">{escape(currency)} {escape(line["amount"])}</td>',
    ]
    rows = [f'    <tr class="line">{"".join(cells)}</tr>']
    rows += [_tier_row(tier, currency) for tier in line.get("tiers") or []]
    return "\n".join(rows)


def _trace(line: dict[str, Any]) -> str:
    """Where a usage line's events are listed: lineage is found on demand, not stored."""
    if line["kind"] != "usage" or not line.get("line_id"):
        return ""
    command = f"meterbook invoices --line {line['line_id']} --events"
    return f'<div class="trace">Events behind this line: <code>{escape(command)}</code></div>'


def _tier_row(tier: dict[str, Any], currency: str) -> str:
    upper = "∞" if tier.get("up_to") is None else quantity_text(tier["up_to"])
    text = (
        f"Tier {tier.get('tier')} ({quantity_text(tier.get('from') or 0)} to {upper}): "
        f"{quantity_text(tier.get('quantity'))} × {quantity_text(tier.get('unit_price'))}"
    )
    flat = tier.get("flat_fee")
    if flat is not None and Decimal(str(flat)) != 0:
        text += f" + flat fee {quantity_text(flat)}"
    amount = f"{currency} {tier['amount']}" if tier.get("amount") is not None else ""
    return (
        f'    <tr class="tier"><td colspan="5">{escape(text)}</td>'
        f'<td class="num">{escape(amount)}</td></tr>'
    )


def _total_rows(invoice: dict[str, Any], customer: Customer | None) -> str:
    currency = invoice["currency"]
    rows = [("Subtotal", invoice["subtotal"])]
    if Decimal(invoice["discount_total"]) != 0:
        rows.append(("Discounts included above", f"-{invoice['discount_total']}"))
    rows.append((_tax_label(invoice, customer), invoice["tax_total"]))
    rows.append(("Total", invoice["total"]))
    if Decimal(invoice.get("credits_applied") or 0) != 0:
        rows.append(("Credits applied", f"-{invoice['credits_applied']}"))
    cells = [
        f'<tr><td>{escape(label)}</td><td class="num">{escape(currency)} {escape(v)}</td></tr>'
        for label, v in rows
    ]
    due = f'<tr class="due"><td>Amount due</td><td class="num">{escape(currency)} {escape(invoice["amount_due"])}</td></tr>'
    return "\n".join([*cells, due])


def _tax_label(invoice: dict[str, Any], customer: Customer | None) -> str:
    # the catalog's rate is shown only when it is the one this invoice was taxed at
    if customer is None:
        return "Tax"
    subtotal, rate = Decimal(invoice["subtotal"]), customer.tax_rate
    if round_money(subtotal * rate, invoice["currency"]) != Decimal(invoice["tax_total"]):
        return "Tax"
    return f"Tax ({quantity_text(rate * 100)}% of subtotal)"


def charts_html(usage: DailyUsage, catalog: Catalog, invoice: dict[str, Any]) -> str:
    codes = [line["meter"] for line in invoice["lines"] if line["kind"] == "usage"]
    meters = list(dict.fromkeys(code for code in codes if code))
    if not meters or not usage.available:
        return ""
    start, end = (
        date.fromisoformat(invoice["period_start"]),
        date.fromisoformat(invoice["period_end"]),
    )
    figures = []
    for code in meters:
        meter = catalog.find_meter(code)
        name = meter.display_name if meter else code
        additive = meter is None or meter.aggregation in _ADDITIVE
        points = usage.points(invoice["customer_id"], code, start, end, additive)
        if meter is not None and meter.unit is not None:
            # the line's units (per 1k tokens...), unrounded: the chart is for reading only
            points = [DailyPoint(p.day, p.quantity / meter.unit.divide_by) for p in points]
        figures.append(usage_chart_svg(name, points, start, end))
    return '<h2>Daily usage</h2>\n<div class="charts">\n' + "\n".join(figures) + "\n</div>"
