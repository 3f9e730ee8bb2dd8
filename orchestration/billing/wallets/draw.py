"""One customer's draws on one close's invoices (SPEC 7), pure arithmetic on Decimals.

Order, as SPEC 7 gives it: credit-priced usage first (their covered units, in catalog order),
then promotional grants over the lines they apply to in invoice line order (before tax), then
tax, then paid grants (after tax, at most the total less the invoice's credit purchases).
Grants are taken in drawing order (`Grant.order_key`), each over every invoice before the
next grant. A grant pays at most the part of a line incurred while it was valid (`Span.share`,
rounded down), and a discount lowers what credits may pay for a line in proportion to it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

from orchestration.billing.wallets.grants import (
    PAID,
    PROMOTIONAL,
    Grant,
    Span,
    drawing_order,
    floor_to,
)

ZERO = Decimal(0)
_TWELVE = Decimal("1e-12")


@dataclass(frozen=True)
class Line:
    line_id: str
    line_no: int
    kind: str
    charge_group: str  # usage | fixed_fees | adjustment | discount (seed line_kinds)
    amount: Decimal
    span: Span
    taxable: bool = True
    credit_eligible: bool = True
    discount_applies_to: str | None = None  # discount lines: usage | fixed_fees | all
    credit_price: Decimal | None = None
    covered: tuple[tuple[str, Decimal], ...] = ()  # (grant_id, units at credit_price)


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    subscription_id: str
    exponent: int
    tax_rate: Decimal
    lines: tuple[Line, ...]
    purchases: tuple[Grant, ...] = ()  # paid grants bought on this invoice


@dataclass
class InvoiceDraws:
    invoice: Invoice
    promotional: list[tuple[str, str, Decimal]] = field(default_factory=list)  # grant, line, amt
    paid: list[tuple[str, Decimal]] = field(default_factory=list)  # grant, amount
    tax: Decimal = ZERO
    total: Decimal = ZERO

    def promotional_by_grant(self) -> dict[str, Decimal]:
        """Each promotional grant's draws on this invoice (its promotional_credit line)."""
        out: dict[str, Decimal] = defaultdict(Decimal)
        for grant_id, _, amount in self.promotional:
            out[grant_id] += amount
        return dict(out)

    @property
    def credits_applied(self) -> Decimal:
        return sum((amount for _, amount in self.paid), ZERO)


def payable_amounts(invoice: Invoice) -> dict[str, Decimal]:
    """What credits may pay of each eligible line: its amount less its share of the discounts
    on it and of the caps and fee credits of its group (each in proportion to the amounts it
    is taken from), so credits never pay for what the invoice does not charge."""
    lines = [line for line in invoice.lines if line.credit_eligible and line.amount > 0]
    payable = {line.line_id: line.amount for line in lines}
    for discount in (line for line in invoice.lines if line.kind == "discount"):
        taken_from = [
            line
            for line in invoice.lines
            if line.credit_eligible and _discounted_by(line, discount.discount_applies_to)
        ]
        _reduce(payable, taken_from, -discount.amount)
    for negative in (ln for ln in invoice.lines if ln.credit_eligible and ln.amount < 0):
        group = [ln for ln in lines if ln.charge_group == negative.charge_group]
        _reduce(payable, group, -negative.amount)
    # in minor units: every draw, cap and room below is then a whole minor unit
    return {key: floor_to(max(value, ZERO), invoice.exponent) for key, value in payable.items()}


def _reduce(payable: dict[str, Decimal], lines: list[Line], reduction: Decimal) -> None:
    base = sum((line.amount for line in lines), ZERO)
    if base <= 0:
        return
    for line in lines:
        if line.line_id in payable:
            payable[line.line_id] -= reduction * line.amount / base


def _discounted_by(line: Line, applies_to: str | None) -> bool:
    if applies_to == "usage":
        return line.charge_group == "usage"
    if applies_to == "fixed_fees":
        return line.charge_group == "fixed_fees"
    return line.charge_group in ("usage", "fixed_fees")


def applies(grant: Grant, line: Line) -> bool:
    return line.charge_group == "usage" if grant.applies_to == "usage" else True


def draw_customer(
    invoices: list[Invoice], grants: list[Grant], balances: dict[str, Decimal]
) -> list[InvoiceDraws]:
    """Draw `grants` (their `balances`, updated in place) on one customer's `invoices`."""
    results = [InvoiceDraws(inv) for inv in invoices]
    payable = {inv.invoice_id: payable_amounts(inv) for inv in invoices}
    drawn: dict[str, Decimal] = defaultdict(Decimal)  # line_id -> drawn by promotional grants
    by_grant: dict[tuple[str, str], Decimal] = defaultdict(Decimal)  # (grant, line) -> drawn
    promotional = drawing_order([g for g in grants if g.kind == PROMOTIONAL])

    def take(result: InvoiceDraws, grant: Grant, line: Line, want: Decimal) -> None:
        room = payable[result.invoice.invoice_id].get(line.line_id, ZERO) - drawn[line.line_id]
        amount = min(balances.get(grant.grant_id, ZERO), want, room)
        amount = floor_to(amount, result.invoice.exponent)  # a balance may hold sub-units
        if amount > 0:
            balances[grant.grant_id] -= amount
            drawn[line.line_id] += amount
            by_grant[(grant.grant_id, line.line_id)] += amount
            _add(result.promotional, (grant.grant_id, line.line_id), amount)

    # credit-priced usage first: each grant pays for the units it covered at credit_price
    for grant in promotional:
        for result in results:
            inv = result.invoice
            for line in (ln for ln in inv.lines if ln.covered):
                units = dict(line.covered).get(grant.grant_id, ZERO)
                if units > 0 and line.amount > 0:
                    factor = payable[inv.invoice_id].get(line.line_id, ZERO) / line.amount
                    take(
                        result,
                        grant,
                        line,
                        floor_to(units * line.credit_price * factor, inv.exponent),
                    )
    for grant in promotional:
        for result in results:
            inv = result.invoice
            for line in inv.lines:
                if line.line_id not in payable[inv.invoice_id] or not applies(grant, line):
                    continue
                share = line.span.share(grant)
                cap = floor_to(payable[inv.invoice_id][line.line_id] * share, inv.exponent)
                take(result, grant, line, cap - by_grant[(grant.grant_id, line.line_id)])
    for result in results:
        _tax(result)
    _draw_paid(results, grants, balances, payable, drawn)
    return results


def _add(draws: list[tuple[str, str, Decimal]], key: tuple[str, str], amount: Decimal) -> None:
    """One draw per grant and line: the credit-priced pass and the line pass add up."""
    for i, (grant_id, line_id, before) in enumerate(draws):
        if (grant_id, line_id) == key:
            draws[i] = (grant_id, line_id, before + amount)
            return
    draws.append((*key, amount))


def _tax(result: InvoiceDraws) -> None:
    """Tax and total as fct_invoices computes them: the rate on the taxable lines (credit
    purchases are not taxable; promotional credits lower the price) rounded half-up once."""
    inv = result.invoice
    promotional = -sum((amount for _, _, amount in result.promotional), ZERO)
    taxable = sum((ln.amount for ln in inv.lines if ln.taxable), ZERO) + promotional
    purchases = sum((g.amount for g in inv.purchases), ZERO)
    subtotal = sum((ln.amount for ln in inv.lines), ZERO) + promotional + purchases
    product = (taxable * inv.tax_rate).quantize(_TWELVE, rounding=ROUND_HALF_UP)
    result.tax = product.quantize(Decimal(1).scaleb(-inv.exponent), rounding=ROUND_HALF_UP)
    result.total = subtotal + result.tax


def _draw_paid(results, grants, balances, payable, drawn) -> None:
    """Paid grants after tax: each pays the share of the invoice it may pay for (the lines it
    applies to, while it was valid), never more than the total less the credit purchases."""
    for grant in drawing_order([g for g in grants if g.kind == PAID]):
        for result in results:
            inv = result.invoice
            cap = result.total - sum((g.amount for g in inv.purchases), ZERO)
            room = cap - result.credits_applied
            fraction = _paid_fraction(grant, inv, payable[inv.invoice_id], drawn)
            amount = floor_to(
                min(balances.get(grant.grant_id, ZERO), cap * fraction, room), inv.exponent
            )
            if amount > 0:
                balances[grant.grant_id] -= amount
                result.paid.append((grant.grant_id, amount))


def _paid_fraction(grant: Grant, inv: Invoice, payable: dict[str, Decimal], drawn) -> Decimal:
    left = {
        ln.line_id: payable[ln.line_id] - drawn[ln.line_id]
        for ln in inv.lines
        if ln.line_id in payable
    }
    whole = sum(left.values(), ZERO)
    if whole <= 0:  # nothing eligible left (tax or adjustments only): valid on the invoice at all?
        return (
            Decimal(1)
            if any(ln.span.share(grant) > 0 for ln in inv.lines) or not inv.lines
            else ZERO
        )
    part = sum(
        (
            left[ln.line_id] * ln.span.share(grant)
            for ln in inv.lines
            if ln.line_id in left and applies(grant, ln)
        ),
        ZERO,
    )
    return part / whole


def cover_credit_priced(
    lines: list[tuple[str, Decimal, Decimal, Span]],
    grants: list[Grant],
    balances: dict[str, Decimal],
) -> dict[str, list[tuple[str, Decimal]]]:
    """SPEC 7's credit price: grant by grant in drawing order, each covers
    min(q_g, floor(B_g / credit_price)) more units of each credit-priced line
    (key, billable quantity, credit_price, span), q_g being the line's units not yet covered
    that were incurred while the grant was valid. `balances` are not changed."""
    left = dict(balances)
    covered: dict[str, list[tuple[str, Decimal]]] = defaultdict(list)
    uncovered = {key: quantity for key, quantity, _, _ in lines}
    for grant in drawing_order([g for g in grants if g.kind == PROMOTIONAL]):
        for key, quantity, price, span in lines:
            valid = quantity * span.share(grant)
            q_g = min(uncovered[key], valid)
            affordable = (left.get(grant.grant_id, ZERO) / price).to_integral_value(
                rounding="ROUND_FLOOR"
            )
            units = min(q_g, affordable)
            if units > 0:
                uncovered[key] -= units
                left[grant.grant_id] -= units * price
                covered[key].append((grant.grant_id, units))
    return dict(covered)
