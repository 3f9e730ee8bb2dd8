"""The credit-note arithmetic (billing/credit_notes/plan.py), pure: whatever sequence of
partial and whole credits is asked, no line and no invoice is ever credited more than it
billed, and an invoice credited in full gives back exactly its lines and its tax."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestration.billing.credit_notes.plan import (
    CreditedSoFar,
    CreditNoteError,
    InvoiceLine,
    plan_credit_note,
)
from orchestration.billing.money import round_money

KINDS = ["usage", "fixed_fee", "minimum_true_up", "discount", "credit_purchase"]


@st.composite
def invoices(draw):
    currency = draw(st.sampled_from(["USD", "JPY", "KWD"]))
    exponent = {"USD": 2, "JPY": 0, "KWD": 3}[currency]
    lines = []
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(KINDS))
        minor = draw(st.integers(1, 500_000))
        amount = Decimal(minor).scaleb(-exponent)
        lines.append(
            InvoiceLine(f"li_{i}", kind, f"{kind} {i}", -amount if kind == "discount" else amount)
        )
    taxable = sum((x.amount for x in lines if x.taxable), Decimal(0))
    rate = draw(st.sampled_from(["0", "0.07", "0.2", "0.125"]))
    tax = round_money(max(taxable, Decimal(0)) * Decimal(rate), currency)
    return currency, lines, tax


def _requests(draw, lines, currency):
    """A few credits: a list of (line, amount) asks, or None for the whole rest."""
    asks = []
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            line = draw(st.sampled_from(lines))
            share = draw(st.sampled_from(["0.1", "0.33", "0.5", "1", "1.2"]))
            amount = round_money(abs(line.amount) * Decimal(share), currency)
            asks.append(((line.line_id, amount),))
        else:
            asks.append(None)
    asks.append(None)  # finally, everything left
    return asks


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_credits_never_exceed_what_was_billed_and_a_full_credit_returns_it_exactly(data):
    currency, lines, tax = data.draw(invoices())
    by_line: dict[str, Decimal] = {}
    tax_credited = Decimal(0)
    for ask in _requests(data.draw, lines, currency):
        earlier = CreditedSoFar(dict(by_line), tax_credited)
        try:
            plan = plan_credit_note("MB-1", currency, lines, tax, earlier, ask)
        except CreditNoteError:
            continue  # refused: nothing changes
        assert sum((x.amount for x in plan.lines), Decimal(0)) == plan.subtotal
        assert sum((x.tax_amount for x in plan.lines), Decimal(0)) == plan.tax_total
        assert plan.total == plan.subtotal + plan.tax_total
        for x in plan.lines:
            by_line[x.line_id] = by_line.get(x.line_id, Decimal(0)) + x.amount
        tax_credited += plan.tax_total
        for line in lines:
            credited = by_line.get(line.line_id, Decimal(0))
            assert abs(credited) <= abs(line.amount) and credited * line.amount >= 0
        assert 0 <= tax_credited <= tax

    _assert_all_given_back(lines, tax, by_line, tax_credited)


def _assert_all_given_back(lines, tax, by_line, tax_credited):
    """After the last ask (the whole rest), every cent billed and all the tax are given back.
    Each line too, unless what was left of the lines netted to zero (a charge's last cents
    against a discount's): a note of nothing is refused, and no money is held back."""
    billed = [x for x in lines if x.kind != "credit_purchase"]
    if sum((x.amount for x in billed), Decimal(0)) <= 0:
        return
    left = [x.amount - by_line.get(x.line_id, Decimal(0)) for x in billed]
    assert sum(left, Decimal(0)) == 0
    if sum((x.amount for x in billed if x.taxable), Decimal(0)) > 0:
        assert tax_credited == tax


def test_a_rest_that_nets_to_zero_is_refused_and_nothing_is_held_back():
    """Hypothesis's draw: usage 0.02, discount -0.01; 0.01 of the usage takes the whole net."""
    lines = [
        InvoiceLine("li_0", "usage", "usage 0", Decimal("0.02")),
        InvoiceLine("li_1", "discount", "discount 1", Decimal("-0.01")),
    ]
    first = plan_credit_note(
        "MB-1", "USD", lines, Decimal(0), CreditedSoFar({}), (("li_0", Decimal("0.01")),)
    )
    assert first.total == Decimal("0.01")
    try:
        plan_credit_note(
            "MB-1", "USD", lines, Decimal(0), CreditedSoFar({"li_0": Decimal("0.01")}), None
        )
    except CreditNoteError as exc:
        assert "nothing left to credit" in str(exc)
    else:
        raise AssertionError("a credit note of nothing was issued")
    _assert_all_given_back(lines, Decimal(0), {"li_0": Decimal("0.01")}, Decimal(0))


def test_a_line_amount_with_more_digits_than_the_currency_is_refused():
    lines = [InvoiceLine("li_1", "usage", "Usage", Decimal("100"))]
    try:
        plan_credit_note(
            "MB-1", "JPY", lines, Decimal(0), CreditedSoFar({}), (("li_1", Decimal("1.5")),)
        )
    except CreditNoteError as exc:
        assert "whole minor units of JPY" in str(exc)
    else:
        raise AssertionError("1.5 JPY was accepted")
