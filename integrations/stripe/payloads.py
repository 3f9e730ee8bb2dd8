"""What we send to Stripe, as pure functions of our own records (STYLE.md item 8).

Every object carries our id in its metadata (so a re-run finds it instead of creating a twin)
and every create has an idempotency key made from our ids only (so a retry, or a re-run
within Stripe's 24 hours, gets the first object back).

One Stripe invoice item per ledger line, amounts in the currency's minor units. Two more items
make Stripe's total equal what we bill, since meterbook computes tax and credits itself:
a `tax` item (the ledger's `tax_total`, rounded once like the ledger) and a `credits` item
(minus `credits_applied`), each only when not zero. So the Stripe invoice's total is the
ledger's `amount_due`, to the minor unit. No item is `discountable`: discounts are already
lines, and a coupon on the Stripe customer must not discount them a second time.

Prepaid credits (SPEC 7) need nothing of their own: a `promotional_credit` line is a negative
item and a `credit_purchase` line a positive one, like every line, and no item carries a
Stripe tax rate (the ledger's tax, which leaves purchases out, is the `tax` item); paid
credits drawn are the `credits` item.

Credit notes (SPEC 11) go as Stripe credit notes of custom lines, one per credited line, and a
`Tax` line for the tax credited (our Stripe invoices carry tax as an item of their own, so it
is credited the same way); `credit_note_lines` says what becomes of the discounts a whole
credit gives back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from urllib.parse import quote
from zoneinfo import ZoneInfo

from integrations.stripe.errors import SyncError
from integrations.stripe.records import LedgerInvoice, LedgerLine
from orchestration.billing.money import to_minor_units
from orchestration.catalog.models import Customer

KEY_PREFIX = "meterbook-v1"
META_CUSTOMER = "meterbook_customer_id"
META_INVOICE = "meterbook_invoice_id"
META_NUMBER = "meterbook_invoice_number"
META_LINE = "meterbook_line_id"
META_CREDIT_NOTE = "meterbook_credit_note_id"
META_CREDIT_NOTE_NUMBER = "meterbook_credit_note_number"
TAX_REF = "meterbook:tax"
CREDITS_REF = "meterbook:credits"
# Stripe requires a due date for invoices it emails; 30 days when the catalog gives none.
DEFAULT_DAYS_UNTIL_DUE = 30
MAX_ITEMS_PER_INVOICE = 250  # Stripe's limit of invoice items on one invoice
_MAX_KEY_LENGTH = 255
_MAX_INVOICE_DESCRIPTION = 1500
_MAX_ITEM_DESCRIPTION = 5000
_MAX_CREDIT_NOTE_TEXT = 5000  # a credit note line's description, and its memo
CREDIT_NOTE_TAX_LINE = "Tax"


@dataclass(frozen=True)
class PlannedItem:
    """One Stripe invoice item the invoice must have; `ref` is our line id (or TAX/CREDITS)."""

    ref: str
    kind: str
    amount_minor: int
    description: str
    period_start: int  # unix seconds: local midnight of the first day
    period_end: int  # unix seconds: local midnight of the day after (Stripe's convention)
    quantity: str | None


@dataclass(frozen=True)
class InvoicePlan:
    invoice: LedgerInvoice
    items: tuple[PlannedItem, ...]
    total_minor: int  # what the Stripe invoice must total: the ledger's amount_due


def idempotency_key(kind: str, *ids: str, generation: int = 0) -> str:
    """`meterbook-v1:<kind>:<id>:<id>`, each id percent-encoded so ids holding ':' cannot
    collide and the key stays ASCII for its header; hashed when longer than Stripe allows.

    `generation` > 0 (`...:g2`) only after Stripe refused the request with a 4xx: a refusal
    creates nothing, and a new key lets a fixed request through before the old one expires.
    """
    parts = [KEY_PREFIX, kind, *(quote(i, safe="") for i in ids)]
    readable = ":".join(parts + ([f"g{generation}"] if generation else []))
    if len(readable) <= _MAX_KEY_LENGTH:
        return readable
    digest = hashlib.sha256(readable.encode()).hexdigest()
    return f"{KEY_PREFIX}:{kind}:sha256:{digest}"


def metadata_query(key: str, value: str) -> str:
    """A Stripe search query matching one metadata value exactly (quotes escaped)."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"metadata['{key}']:'{escaped}'"


def customer_params(customer: Customer) -> dict:
    params: dict = {
        "name": (customer.name or customer.id)[:256],
        "metadata": {META_CUSTOMER: customer.id},
    }
    if customer.email:
        params["email"] = customer.email
    return params


def invoice_params(invoice: LedgerInvoice, customer: Customer, stripe_customer_id: str) -> dict:
    params: dict = {
        "customer": stripe_customer_id,
        "currency": invoice.currency.lower(),
        # Off while we build it: Stripe must never finalize a draft a dead run left half-done.
        "auto_advance": False,
        "collection_method": customer.collection_method,
        "pending_invoice_items_behavior": "exclude",
        "description": _invoice_description(invoice)[:_MAX_INVOICE_DESCRIPTION],
        "metadata": {
            META_INVOICE: invoice.invoice_id,
            META_NUMBER: invoice.number,
            "meterbook_customer_id": invoice.customer_id,
            "meterbook_subscription_id": invoice.subscription_id,
            "meterbook_close_month": invoice.close_month,
        },
    }
    if customer.collection_method == "send_invoice":
        days = customer.days_until_due
        params["days_until_due"] = DEFAULT_DAYS_UNTIL_DUE if days is None else days
    return params


def _invoice_description(invoice: LedgerInvoice) -> str:
    return (
        f"Invoice {invoice.number} for {invoice.subscription_id}, "
        f"{invoice.period_start.isoformat()} to {invoice.period_end.isoformat()} (end exclusive)"
    )


def finalize_params(collect: bool) -> dict:
    """`collect`: let Stripe collect from now on (charge the card, or email the invoice)."""
    return {"auto_advance": collect}


def plan_invoice(invoice: LedgerInvoice, customer: Customer) -> InvoicePlan:
    """The items the Stripe invoice must hold; refuses a ledger invoice that does not add up."""
    _check_adds_up(invoice)
    try:
        items = _planned_items(invoice, ZoneInfo(customer.timezone))
        total = to_minor_units(invoice.amount_due, invoice.currency)
    except ValueError as exc:  # an amount not rounded to the currency's minor unit
        raise SyncError(f"ledger invoice {invoice.number}: {exc}") from None
    if len(items) > MAX_ITEMS_PER_INVOICE:
        raise SyncError(
            f"invoice {invoice.number} needs {len(items)} Stripe items; "
            f"Stripe allows {MAX_ITEMS_PER_INVOICE} per invoice"
        )
    return InvoicePlan(invoice, items, total)


def _planned_items(invoice: LedgerInvoice, zone: ZoneInfo) -> tuple[PlannedItem, ...]:
    items = [_line_item(line, invoice.currency, zone) for line in invoice.lines]
    period = (_midnight(invoice.period_start, zone), _midnight(invoice.period_end, zone))
    if invoice.tax_total:
        items.append(_extra_item(TAX_REF, "tax", "Tax", invoice.tax_total, invoice, period))
    if invoice.credits_applied:
        credit = -invoice.credits_applied
        items.append(
            _extra_item(CREDITS_REF, "credits", "Prepaid credits applied", credit, invoice, period)
        )
    return tuple(items)


def invoice_item_params(
    item: PlannedItem,
    invoice: LedgerInvoice,
    stripe_customer_id: str,
    stripe_invoice_id: str,
) -> dict:
    metadata = {META_INVOICE: invoice.invoice_id, META_LINE: item.ref, "meterbook_kind": item.kind}
    if item.quantity is not None:
        metadata["meterbook_quantity"] = item.quantity
    return {
        "customer": stripe_customer_id,
        "invoice": stripe_invoice_id,
        "currency": invoice.currency.lower(),
        "amount": item.amount_minor,
        "description": item.description[:_MAX_ITEM_DESCRIPTION],
        "period": {"start": item.period_start, "end": item.period_end},
        "discountable": False,
        "metadata": metadata,
    }


def _line_item(line: LedgerLine, currency: str, zone: ZoneInfo) -> PlannedItem:
    return PlannedItem(
        ref=line.line_id,
        kind=line.kind,
        amount_minor=to_minor_units(line.amount, currency),
        description=line.description,
        period_start=_midnight(line.period_start, zone),
        period_end=_midnight(line.period_end, zone),
        quantity=None if line.quantity is None else _plain(line.quantity),
    )


def _extra_item(
    ref: str,
    kind: str,
    description: str,
    amount: Decimal,
    invoice: LedgerInvoice,
    period: tuple[int, int],
) -> PlannedItem:
    minor = to_minor_units(amount, invoice.currency)
    return PlannedItem(ref, kind, minor, description, period[0], period[1], None)


def _check_adds_up(invoice: LedgerInvoice) -> None:
    lines = sum((line.amount for line in invoice.lines), Decimal(0))
    checks = (
        ("the sum of its lines", lines, invoice.subtotal),
        ("subtotal + tax", invoice.subtotal + invoice.tax_total, invoice.total),
        ("total - credits", invoice.total - invoice.credits_applied, invoice.amount_due),
    )
    for what, computed, stored in checks:
        if computed != stored:
            raise SyncError(
                f"ledger invoice {invoice.number} does not add up: {what} is {computed}, "
                f"the ledger says {stored}; nothing was sent to Stripe for it"
            )


def _midnight(day: date, zone: ZoneInfo) -> int:
    """Unix seconds of local midnight starting `day` (periods are local days, SPEC 3.3)."""
    return int(datetime.combine(day, time(), tzinfo=zone).timestamp())


def _plain(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def from_minor_units(amount: int, currency_exponent: int) -> Decimal:
    """Stripe's integer amount back to the decimal amount (exact: a power-of-ten shift)."""
    return Decimal(amount).scaleb(-currency_exponent)


# -- credit notes and refunds ------------------------------------------------------------------


@dataclass(frozen=True)
class CreditLine:
    """One custom line of a Stripe credit note: quantity 1 at `amount_minor`."""

    description: str
    amount_minor: int


def credit_note_lines(
    lines: Sequence[tuple[str, Decimal]], tax: Decimal, currency: str
) -> tuple[CreditLine, ...]:
    """The Stripe lines of a credit note: `(description, pre-tax amount)` per credited line,
    in order, then a `Tax` line when the tax credited is not zero.

    A whole credit gives discounts back as negative lines. A custom line of a Stripe credit
    note credits, it cannot charge, so each negative line is netted out of the positive lines,
    first first, and named in the description of each line it lowers; the lines still add up
    to the credit note's total, to the minor unit.
    """
    amounts = [(text, to_minor_units(amount, currency)) for text, amount in lines]
    if tax:
        amounts.append((CREDIT_NOTE_TAX_LINE, to_minor_units(tax, currency)))
    positive = [[text, minor] for text, minor in amounts if minor > 0]
    for text, minor in amounts:
        if minor < 0:
            _net_out(positive, -minor, text)
    return tuple(
        CreditLine(text[:_MAX_CREDIT_NOTE_TEXT], minor) for text, minor in positive if minor > 0
    )


def _net_out(positive: list[list], owed: int, text: str) -> None:
    for line in positive:
        taken = min(line[1], owed)
        if taken:
            line[1] -= taken
            line[0] += f", net of {text}"
            owed -= taken
    if owed:
        raise SyncError(f"its negative lines exceed the others by {owed} minor units")


def credit_note_metadata(credit_note_id: str, number: str, invoice_id: str) -> dict[str, str]:
    return {
        META_CREDIT_NOTE: credit_note_id,
        META_CREDIT_NOTE_NUMBER: number,
        META_INVOICE: invoice_id,
    }


def credit_note_params(
    stripe_invoice_id: str,
    lines: Sequence[CreditLine],
    *,
    memo: str,
    metadata: dict[str, str],
    settlement: dict[str, str | int],
) -> dict:
    """`settlement`: empty for an open invoice (the credit lowers what it owes); for a paid
    one, what covers the total: `{"refund": re_id}` or `{"out_of_band_amount": total}`."""
    return {
        "invoice": stripe_invoice_id,
        "lines": [
            {
                "type": "custom_line_item",
                "description": line.description,
                "quantity": 1,
                "unit_amount": line.amount_minor,
            }
            for line in lines
        ],
        "memo": memo[:_MAX_CREDIT_NOTE_TEXT],
        "metadata": metadata,
        **settlement,
    }


def refund_params(payment: dict[str, str], amount_minor: int, metadata: dict[str, str]) -> dict:
    """`payment`: `{"payment_intent": pi}`, or `{"charge": ch}` for a charge without one."""
    return {**payment, "amount": amount_minor, "metadata": metadata}
