"""What a document prints for each invoice line: label, text, quantities, unit (pure).

Dates are shown with inclusive last days everywhere: the JSON's exclusive `period_end`
2026-11-01 reads "to 2026-10-31", in the period column and in an adjustment's text alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from orchestration.billing import line_kinds
from orchestration.billing.documents.text import (
    display_quantity,
    grouped,
    price_text,
    quantity_text,
)
from orchestration.billing.money import minor_exponent
from orchestration.catalog.models import Catalog, Meter

# SPEC 7 lines: the grant they draw from or buy is their fee_code
_GRANT_LINES = ("promotional_credit", "credit_purchase")


@dataclass(frozen=True)
class LineRow:
    label: str
    tags: tuple[str, ...]  # "trial", "credit": why an amount is zero or negative
    description: str
    notes: tuple[str, ...]
    period: str
    quantity: str
    billable: str
    unit_price: str
    amount: str
    tiers: tuple[str, ...] = field(default=())
    trace: str | None = None


def span(start: str, end: str) -> str:
    """A half-open [start, end) as the days a reader expects: start to the last day."""
    last = date.fromisoformat(end) - timedelta(days=1)
    return f"{start} to {last.isoformat()}"


def line_row(
    line: dict[str, Any], currency: str, catalog: Catalog, trial_end: date | None
) -> LineRow:
    meter = catalog.find_meter(line["meter"]) if line.get("meter") else None
    decimals = _decimals(meter, catalog)
    per = unit_words(meter)
    unit_price = quantity_text(line.get("unit_price"))
    return LineRow(
        label=kind_label(line["kind"]),
        tags=_tags(line, trial_end),
        description=_description(line),
        notes=_credit_price_notes(line, currency, decimals)
        + ((f"Quantities in units of {per}",) if per else ()),
        period=span(line["period_start"], line["period_end"]),
        quantity=display_quantity(line.get("quantity"), decimals),
        billable=display_quantity(line.get("billable_quantity"), decimals),
        unit_price=f"{unit_price} per {per}" if unit_price and per else unit_price,
        amount=f"{currency} {line['amount']}",
        tiers=tuple(_tier_text(t, currency, decimals) for t in line.get("tiers") or []),
        trace=_trace(line),
    )


def kind_label(kind: str) -> str:
    """The registry's label; a kind it does not list reads as words (promotional credit)."""
    label = line_kinds.label(kind)
    return label.replace("_", " ").capitalize() if label == kind else label


def unit_words(meter: Meter | None) -> str | None:
    """'1,000 LLM tokens' for a meter billed in thousands; None when billed one by one."""
    if meter is None or meter.unit is None or meter.unit.divide_by == 1:
        return None
    return f"{grouped(meter.unit.divide_by)} {meter.display_name}"


def _decimals(meter: Meter | None, catalog: Catalog) -> int | None:
    if meter is not None and meter.display_decimals is not None:
        return meter.display_decimals
    return catalog.settings.display_decimals


def _tags(line: dict[str, Any], trial_end: date | None) -> tuple[str, ...]:
    amount = Decimal(line["amount"])
    # a discount or a promotional credit is labelled by its kind
    if amount < 0 and line["kind"] not in ("discount", "promotional_credit"):
        return ("credit",)
    # segments are cut at trial_end (SPEC 3.3): a line ending by then lies in the trial
    in_trial = trial_end is not None and date.fromisoformat(line["period_end"]) <= trial_end
    return ("trial",) if in_trial and amount == 0 else ()


def _description(line: dict[str, Any]) -> str:
    if line["kind"] in _GRANT_LINES and line.get("fee_code"):
        return _grant_description(line["kind"], line["fee_code"])
    text = line.get("description") or ""
    # adjustment texts carry the JSON's exclusive end; the document shows the last day
    start, end = line["period_start"], line["period_end"]
    exclusive = f"{start} to {end}"
    return text.replace(exclusive, span(start, end), 1) if exclusive in text else text


def _grant_description(kind: str, grant_id: str) -> str:
    """The grant a credit line draws from or buys, by its id (the wallet ledger's)."""
    if kind == "credit_purchase":
        return f"Credit grant {grant_id}, bought on this invoice (not taxed)"
    return f"Credit grant {grant_id}"


def _credit_price_notes(
    line: dict[str, Any], currency: str, decimals: int | None
) -> tuple[str, ...]:
    """SPEC 7: a credit-priced line in its two parts, "60 at 1.00 (credit price) + 40 at
    1.50"; a part of no units is left out unless both are."""
    if line.get("credit_quantity") is None:
        return ()
    exponent = minor_exponent(currency)
    credit = Decimal(line["credit_quantity"])
    listed = (
        Decimal(line["list_quantity"])
        if line.get("list_quantity") is not None
        else Decimal(line.get("billable_quantity") or 0) - credit
    )
    parts = []
    if credit != 0 or listed == 0:
        parts.append(
            f"{display_quantity(credit, decimals)} at "
            f"{price_text(line.get('credit_price'), exponent)} (credit price)"
        )
    if listed != 0:
        parts.append(
            f"{display_quantity(listed, decimals)} at {price_text(line.get('unit_price'), exponent)}"
        )
    return (" + ".join(parts),)


def _tier_text(tier: dict[str, Any], currency: str, decimals: int | None) -> str:
    upper = "∞" if tier.get("up_to") is None else quantity_text(tier["up_to"])
    text = (
        f"Tier {tier.get('tier')} ({quantity_text(tier.get('from') or 0)} to {upper}): "
        f"{display_quantity(tier.get('quantity'), decimals)} × {quantity_text(tier.get('unit_price'))}"
    )
    flat = tier.get("flat_fee")
    if flat is not None and Decimal(str(flat)) != 0:
        text += f" + flat fee {quantity_text(flat)}"
    if tier.get("amount") is not None:
        text += f" = {currency} {tier['amount']}"
    return text


def _trace(line: dict[str, Any]) -> str | None:
    """The line id a reader gives `meterbook invoices --line ID --events` for its events."""
    if line["kind"] != "usage" or not line.get("line_id"):
        return None
    return line["line_id"]
