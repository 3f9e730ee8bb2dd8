"""What a credit note credits (SPEC 11), decided from the invoice and earlier credit notes.

Pure: Decimals in, a plan or a `CreditNoteError` out; `issue.py` reads the ledger and writes.

The rules, and why:
- A line is credited at most its amount less what earlier credit notes took of it. Only lines
  with a positive amount can be named; prepaid credit purchases never (their credits are in the
  wallet already: take them back there, not by a credit note).
- Discounts and promotional credits lowered what was billed, so a credit note can never give
  back more than the invoice billed: over all its credit notes, the amount credited is at most
  the invoice's lines (after discounts, without credit purchases) and the taxable part at most
  the taxable lines. A whole credit takes every line's remainder, discounts included (as
  negative lines), so it lands exactly on what is left.
- Tax is credited in proportion, cumulatively: after k credit notes the tax credited is
  round(tax_total x taxable credited so far / taxable total), so the notes of an invoice
  credited in full add up to its tax exactly, whatever the order and rounding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from orchestration.billing.line_kinds import line_kinds
from orchestration.billing.money import format_money, round_money

ZERO = Decimal(0)
NOT_CREDITABLE = frozenset({"credit_purchase"})


class CreditNoteError(ValueError):
    """The credit note cannot be issued; the one-line message names the invoice or line."""


@dataclass(frozen=True)
class InvoiceLine:
    line_id: str
    kind: str
    description: str
    amount: Decimal

    @property
    def taxable(self) -> bool:
        found = line_kinds().get(self.kind)
        return bool(found and found.taxable)


@dataclass(frozen=True)
class CreditedSoFar:
    """What the invoice's earlier credit notes took."""

    by_line: Mapping[str, Decimal]
    tax: Decimal = ZERO

    def of(self, line_id: str) -> Decimal:
        return self.by_line.get(line_id, ZERO)


@dataclass(frozen=True)
class PlannedLine:
    line_id: str
    kind: str
    description: str
    amount: Decimal  # credited, before tax
    tax_amount: Decimal


@dataclass(frozen=True)
class CreditNotePlan:
    lines: tuple[PlannedLine, ...]
    subtotal: Decimal
    tax_total: Decimal

    @property
    def total(self) -> Decimal:
        return self.subtotal + self.tax_total


def plan_credit_note(
    number: str,
    currency: str,
    lines: Sequence[InvoiceLine],
    tax_total: Decimal,
    earlier: CreditedSoFar,
    requested: Sequence[tuple[str, Decimal]] | None,
) -> CreditNotePlan:
    """The credit note for invoice `number`: `requested` (line id, amount) pairs, or None for
    the whole of what is left."""
    chosen = (
        _whole(number, lines, earlier)
        if requested is None
        else _lines(number, currency, lines, earlier, requested)
    )
    if not chosen or sum((amount for _, amount in chosen), ZERO) <= 0:
        raise CreditNoteError(f"invoice {number} has nothing left to credit")
    _check_invoice_bounds(number, currency, lines, earlier, chosen)
    tax = _tax(currency, lines, tax_total, earlier, chosen)
    return CreditNotePlan(
        lines=_with_tax(currency, chosen, tax),
        subtotal=sum((amount for _, amount in chosen), ZERO),
        tax_total=tax,
    )


def _whole(
    number: str, lines: Sequence[InvoiceLine], earlier: CreditedSoFar
) -> list[tuple[InvoiceLine, Decimal]]:
    chosen = []
    for line in lines:
        if line.kind in NOT_CREDITABLE:
            continue
        left = line.amount - earlier.of(line.line_id)
        if left != 0:
            chosen.append((line, left))
    return chosen


def _lines(
    number: str,
    currency: str,
    lines: Sequence[InvoiceLine],
    earlier: CreditedSoFar,
    requested: Sequence[tuple[str, Decimal]],
) -> list[tuple[InvoiceLine, Decimal]]:
    by_id = {line.line_id: line for line in lines}
    seen: set[str] = set()
    chosen = []
    for line_id, amount in requested:
        line = by_id.get(line_id)
        if line is None:
            raise CreditNoteError(f"invoice {number} has no line {line_id}")
        if line_id in seen:
            raise CreditNoteError(f"line {line_id} of invoice {number} is named twice")
        seen.add(line_id)
        chosen.append((line, _line_amount(number, currency, line, earlier, amount)))
    return chosen


def _line_amount(
    number: str, currency: str, line: InvoiceLine, earlier: CreditedSoFar, amount: Decimal
) -> Decimal:
    where = f"line {line.line_id} ({line.description}) of invoice {number}"
    if line.kind in NOT_CREDITABLE:
        raise CreditNoteError(
            f"{where} bought prepaid credits: they are in the customer's wallet, not creditable"
        )
    if line.amount <= 0:
        raise CreditNoteError(
            f"{where} is {format_money(line.amount, currency)} {currency}: only charges are credited"
        )
    if amount <= 0:
        raise CreditNoteError(f"{where}: the amount to credit must be positive, not {amount}")
    if round_money(amount, currency) != amount:
        raise CreditNoteError(f"{where}: {amount} is not in whole minor units of {currency}")
    left = line.amount - earlier.of(line.line_id)
    if amount > left:
        took = earlier.of(line.line_id)
        raise CreditNoteError(
            f"{where} can be credited at most {format_money(left, currency)} {currency} more "
            f"(billed {format_money(line.amount, currency)}, credited "
            f"{format_money(took, currency)} before), not {amount}"
        )
    return amount


def _check_invoice_bounds(
    number: str,
    currency: str,
    lines: Sequence[InvoiceLine],
    earlier: CreditedSoFar,
    chosen: list[tuple[InvoiceLine, Decimal]],
) -> None:
    billed = [line for line in lines if line.kind not in NOT_CREDITABLE]
    for label, keep in (("billed", lambda _: True), ("taxable", lambda line: line.taxable)):
        whole = sum((line.amount for line in billed if keep(line)), ZERO)
        before = sum((earlier.of(line.line_id) for line in billed if keep(line)), ZERO)
        now = sum((amount for line, amount in chosen if keep(line)), ZERO)
        if before + now > whole:
            raise CreditNoteError(
                f"invoice {number}: its discounts leave {format_money(whole - before, currency)} "
                f"{currency} of {label} lines to credit, not {format_money(now, currency)}"
            )


def _tax(
    currency: str,
    lines: Sequence[InvoiceLine],
    tax_total: Decimal,
    earlier: CreditedSoFar,
    chosen: list[tuple[InvoiceLine, Decimal]],
) -> Decimal:
    taxable = sum((line.amount for line in lines if line.taxable), ZERO)
    if taxable <= 0 or tax_total == 0:
        return ZERO
    before = sum((earlier.of(line.line_id) for line in lines if line.taxable), ZERO)
    now = sum((amount for line, amount in chosen if line.taxable), ZERO)
    upto = round_money(tax_total * (before + now) / taxable, currency)
    return upto - earlier.tax


def _with_tax(
    currency: str, chosen: list[tuple[InvoiceLine, Decimal]], tax: Decimal
) -> tuple[PlannedLine, ...]:
    """The note's tax spread over its taxable lines by amount, cumulatively rounded, so the
    lines' shares add up to the note's tax exactly (for the document and Stripe's lines)."""
    weights = [amount if line.taxable else ZERO for line, amount in chosen]
    whole = sum(weights, ZERO)
    planned, upto, given = [], ZERO, ZERO
    for (line, amount), weight in zip(chosen, weights, strict=True):
        upto += weight
        share = ZERO
        if whole != 0 and weight != 0:
            share = round_money(tax * upto / whole, currency) - given
            given += share
        planned.append(PlannedLine(line.line_id, line.kind, line.description, amount, share))
    return tuple(planned)
