"""Properties of wallet draws (SPEC 7) that must hold for any grants and invoices: nothing is
drawn twice, no balance goes below zero, the ledger adds up, paid credits never make an amount
due negative, draws are whole minor units, and a close re-run gives the same ledger.

Random inputs: 1-2 customers (USD or JPY), 1-3 invoices each (usage, fixed fees, discounts,
credit-priced usage), one-off catalog grants around the period, plan grants with rollover,
auto top-ups. Grant amounts are whole minor units of the customer's currency (a JPY grant of
12.34 is not money), as the catalog's amounts are."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestration.billing.wallets.close import (
    CloseInputs,
    CloseInvoice,
    PlanGrant,
    close_wallets,
    credit_coverage,
    wallets_from,
)
from orchestration.billing.wallets.draw import Invoice, Line, draw_customer, payable_amounts
from orchestration.billing.wallets.grants import Grant, Span

D = Decimal
ZERO = D(0)
BASE = date(2026, 10, 1)
DAYS = 30
CURRENCIES = {"USD": 2, "JPY": 0}
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def quantum(exponent: int) -> Decimal:
    return D(1).scaleb(-exponent)


def is_whole(amount: Decimal, exponent: int) -> bool:
    return amount == amount.quantize(quantum(exponent))


def draws_whole(inputs: CloseInputs, result) -> bool:
    """Every draw a whole minor unit (asserted again by the sums below: a 28-digit draw once
    came from a discounted line, and such draws add up differently in different orders)."""
    exponents = {inv.invoice_id: inv.exponent for inv in inputs.invoices}
    return all(
        is_whole(e.amount, exponents[e.invoice_id])
        for e in result.entries
        if e.entry_type == "draw"
    )


@st.composite
def money(draw, exponent: int, lo: str, hi: str) -> Decimal:
    """A multiple of the minor unit in [lo, hi]."""
    q = quantum(exponent)
    units = draw(st.integers(int(D(lo) / q), int(D(hi) / q)))
    return (D(units) * q).quantize(q)


# --- grants -----------------------------------------------------------------------------


@st.composite
def catalog_grant(draw, customer_id: str, n: int, exponent: int) -> Grant:
    kind = draw(st.sampled_from(["promotional", "paid"]))
    granted_on = BASE + timedelta(days=draw(st.integers(-20, DAYS + 10)))
    life = draw(st.one_of(st.none(), st.integers(1, 60)))
    return Grant(
        f"{customer_id}_g{n}",
        customer_id,
        kind,
        draw(money(exponent, "0.01" if exponent else "1", "500")),
        granted_on,
        granted_on + timedelta(days=life) if life is not None else None,
        draw(st.integers(0, 3)),
        draw(st.sampled_from(["usage", "all"])),
    )


@st.composite
def plan_grants(draw, exponent: int) -> tuple[PlanGrant, ...]:
    out = []
    if draw(st.booleans()):
        rollover = draw(st.one_of(st.none(), money(exponent, "0", "100")))
        out.append(
            PlanGrant(
                "monthly",
                draw(st.sampled_from(["promotional", "paid"])),
                draw(money(exponent, "1", "200")),
                "period",
                None,
                rollover,
                draw(st.integers(0, 3)),
                draw(st.sampled_from(["usage", "all"])),
            )
        )
    if draw(st.booleans()):
        days = draw(st.one_of(st.none(), st.integers(1, 40)))
        out.append(
            PlanGrant("trial", "promotional", draw(money(exponent, "1", "100")), "start", days)
        )
    return tuple(out)


# --- lines ------------------------------------------------------------------------------


@st.composite
def span_in(draw, start: date, daily: bool) -> Span:
    if draw(st.booleans()):
        lo, hi = 0, DAYS
    else:
        lo = draw(st.integers(0, DAYS - 1))
        hi = draw(st.integers(lo + 1, DAYS))
    s, e = start + timedelta(days=lo), start + timedelta(days=hi)
    if not daily or not draw(st.booleans()):
        return Span(s, e)
    days = draw(st.lists(st.integers(0, hi - lo - 1), min_size=1, max_size=5, unique=True))
    qty = draw(st.lists(st.integers(0, 50), min_size=len(days), max_size=len(days)))
    return Span(
        s, e, tuple(sorted((s + timedelta(days=d), D(q)) for d, q in zip(days, qty, strict=True)))
    )


@st.composite
def charge_lines(draw, prefix: str, start: date, exponent: int) -> list[Line]:
    lines = []
    for n in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["usage", "fixed_fee"]))
        group = "usage" if kind == "usage" else "fixed_fees"
        span = draw(span_in(start, daily=kind == "usage"))
        amount = draw(money(exponent, "0", "300"))
        lines.append(Line(f"{prefix}_l{n}", n + 1, kind, group, amount, span))
    return lines


@st.composite
def discount_line(draw, lines: list[Line], prefix: str, start: date, exponent: int):
    applies_to = draw(st.sampled_from(["usage", "fixed_fees", "all"]))
    groups = {"usage": ("usage",), "fixed_fees": ("fixed_fees",)}.get(
        applies_to, ("usage", "fixed_fees")
    )
    base = sum((ln.amount for ln in lines if ln.charge_group in groups), ZERO)
    if base <= 0:
        return None
    off = (base * draw(st.integers(1, 100)) / 100).quantize(
        quantum(exponent), rounding=ROUND_HALF_UP
    )
    if off <= 0:
        return None
    return Line(
        f"{prefix}_disc",
        len(lines) + 1,
        "discount",
        "discount",
        -off,
        Span(start, start + timedelta(DAYS)),
        discount_applies_to=applies_to,
    )


@st.composite
def credit_priced(draw, prefix: str, start: date, no: int, exponent: int):
    """A per_unit usage line with a credit price: (line id, q, credit_price, unit_price, span);
    its amount is set once the coverage is known."""
    q = D(draw(st.integers(0, 200)))
    price = draw(money(exponent, "1" if exponent == 0 else "0.01", "3"))
    unit_price = price + draw(money(exponent, "0", "2"))
    span = draw(span_in(start, daily=True))
    return (f"{prefix}_cp", no, q, price, unit_price, span)


# --- invoices and a whole close ---------------------------------------------------------


@st.composite
def close_invoices(draw, customer_id: str, currency: str, discounts: bool):
    exponent = CURRENCIES[currency]
    invoices, credit_rows = [], []
    for n in range(draw(st.integers(1, 3))):
        iid, sub = f"{customer_id}_inv{n}", f"{customer_id}_sub{n}"
        start = BASE + timedelta(days=draw(st.integers(0, 5)))
        end = start + timedelta(days=DAYS)
        lines = draw(charge_lines(iid, start, exponent))
        if discounts and draw(st.booleans()):
            disc = draw(discount_line(lines, iid, start, exponent))
            lines += [disc] if disc is not None else []
        if draw(st.booleans()):
            credit_rows.append((iid, *draw(credit_priced(iid, start, len(lines) + 1, exponent))))
        top_up = None
        if draw(st.booleans()):
            top_up = (draw(money(exponent, "0", "100")), draw(money(exponent, "1", "300")))
        next_end = draw(st.sampled_from([end + timedelta(days=DAYS), None]))
        invoices.append(
            CloseInvoice(
                iid,
                customer_id,
                sub,
                currency,
                exponent,
                D(draw(st.integers(0, 25))) / 100,
                start,
                end,
                next_end,
                start_date=start - timedelta(days=draw(st.sampled_from([0, 0, 10]))),
                plan_grants=draw(plan_grants(exponent)),
                top_up=top_up,
                lines=tuple(lines),
            )
        )
    return invoices, credit_rows


@st.composite
def closes(draw, discounts: bool = True, credit_prices: bool = True):
    """(CloseInputs, coverage) of one close month."""
    invoices, grants, rows = [], [], []
    for c in range(draw(st.integers(1, 2))):
        customer_id = f"c{c}"
        currency = draw(st.sampled_from(sorted(CURRENCIES)))
        invs, credit_rows = draw(close_invoices(customer_id, currency, discounts))
        invoices += invs
        rows += credit_rows if credit_prices else []
        exponent = CURRENCIES[currency]
        grants += [
            draw(catalog_grant(customer_id, n, exponent)) for n in range(draw(st.integers(0, 5)))
        ]
    inputs = CloseInputs("2026-10", date(2026, 11, 1), [], grants, invoices)
    return with_credit_prices(inputs, rows)


def with_credit_prices(inputs: CloseInputs, rows) -> tuple[CloseInputs, dict]:
    """Coverage of the credit-priced lines, then those lines with their amounts: the covered
    units at credit_price, the rest at unit_price (SPEC 7), rounded half-up (SPEC 3.4)."""
    usage = [(iid, lid, q, price, span) for iid, lid, _, q, price, _, span in rows]
    coverage = credit_coverage(inputs, usage) if usage else {}
    by_invoice = defaultdict(list)
    for iid, lid, no, q, price, unit_price, span in rows:
        inv = next(i for i in inputs.invoices if i.invoice_id == iid)
        q_credit = sum((u for _, u in coverage.get((iid, lid), ())), ZERO)
        amount = (q_credit * price + (q - q_credit) * unit_price).quantize(
            quantum(inv.exponent), rounding=ROUND_HALF_UP
        )
        by_invoice[iid].append(Line(lid, no, "usage", "usage", amount, span, credit_price=price))
    invoices = [
        CloseInvoice(**{**vars(inv), "lines": inv.lines + tuple(by_invoice[inv.invoice_id])})
        for inv in inputs.invoices
    ]
    return (
        CloseInputs(inputs.close_month, inputs.month_end, [], inputs.catalog_grants, invoices),
        coverage,
    )


# --- an independent run of draw_customer on what the close granted ----------------------


def reference_draws(inputs: CloseInputs, entries, coverage) -> dict[str, tuple]:
    """Per customer: draw_customer on the close's invoices with the grants the close made
    before drawing (and the purchases it put on each invoice): (results, balances after)."""
    out = {}
    for customer_id, invs in inputs.by_customer().items():
        made = [
            e
            for e in entries
            if e.customer_id == customer_id
            and e.entry_type == "grant"
            and e.grant.source not in ("rollover", "top_up")
        ]
        invoices = [
            Invoice(
                inv.invoice_id,
                inv.subscription_id,
                inv.exponent,
                inv.tax_rate,
                tuple(
                    Line(
                        **{
                            **vars(ln),
                            "covered": tuple(coverage.get((inv.invoice_id, ln.line_id), ())),
                        }
                    )
                    for ln in inv.lines
                ),
                tuple(e.grant for e in made if e.invoice_id == inv.invoice_id),
            )
            for inv in invs
        ]
        balances = {e.grant_id: e.amount for e in made}
        out[customer_id] = (
            draw_customer(invoices, [e.grant for e in made], balances),
            balances,
        )
    return out


def horizon(inputs: CloseInputs, customer_id: str) -> date:
    return max(inv.period_end for inv in inputs.by_customer()[customer_id])


# --- properties -------------------------------------------------------------------------


@SETTINGS
@given(closes())
def test_nothing_is_drawn_twice(case):
    inputs, coverage = case
    result = close_wallets(inputs, coverage)
    draws = [e for e in result.entries if e.entry_type == "draw" and e.charge_line_id]
    credit_priced_lines = {line for _, line in coverage}
    # one promotional draw per (grant, line) and pass: the credit-price pass, then the rest
    for (gid, line), n in Counter((e.grant_id, e.charge_line_id) for e in draws).items():
        assert n <= (2 if line in credit_priced_lines else 1), (gid, line)
    # a line is never paid beyond what credits may pay of it (its amount less its discounts)
    paid: dict[str, Decimal] = defaultdict(Decimal)
    for e in draws:
        paid[e.charge_line_id] -= e.amount
    for customer in reference_draws(inputs, result.entries, coverage).values():
        for inv_draws in customer[0]:
            inv = inv_draws.invoice
            payable = payable_amounts(inv)
            amounts = {ln.line_id: ln.amount for ln in inv.lines}
            for line_id in amounts:
                assert paid[line_id] <= payable.get(line_id, ZERO), line_id
                assert paid[line_id] <= max(amounts[line_id], ZERO), line_id
    # paid credits are drawn once per (grant, invoice)
    paid_draws = Counter(
        (e.grant_id, e.invoice_id)
        for e in result.entries
        if e.entry_type == "draw" and not e.charge_line_id
    )
    assert all(n == 1 for n in paid_draws.values())


@SETTINGS
@given(closes())
def test_no_balance_goes_below_zero(case):
    inputs, coverage = case
    result = close_wallets(inputs, coverage)
    for wallet in wallets_from(result.entries).values():
        assert all(b >= 0 for b in wallet.balances.values()), wallet.balances
    for _, balances in reference_draws(inputs, result.entries, coverage).values():
        assert all(b >= 0 for b in balances.values()), balances
    # and step by step: no entry takes a grant below zero
    running: dict[str, Decimal] = defaultdict(Decimal)
    for e in result.entries:
        running[e.grant_id] += e.amount
        assert running[e.grant_id] >= 0, e


@SETTINGS
@given(closes())
def test_each_grant_entries_sum_to_its_final_balance(case):
    """Grant + draws = what draw_customer leaves of a grant; expiry (and rollover) take all of
    it when the grant ends by the horizon; a rollover or top-up grant still holds its amount."""
    inputs, coverage = case
    result = close_wallets(inputs, coverage)
    assert draws_whole(inputs, result)
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for e in result.entries:
        sums[e.grant_id] += e.amount
    assert {gid: b for gid, b in sums.items()} == {
        gid: b for w in wallets_from(result.entries).values() for gid, b in w.balances.items()
    }
    grants = {e.grant_id: e.grant for e in result.entries if e.entry_type == "grant"}
    reference = reference_draws(inputs, result.entries, coverage)
    for gid, grant in grants.items():
        if grant.source in ("rollover", "top_up"):
            expected = grant.amount
        else:
            left = reference[grant.customer_id][1][gid]
            ended = grant.expires_on is not None and grant.expires_on <= horizon(
                inputs, grant.customer_id
            )
            expected = ZERO if ended else left
        assert sums[gid] == expected, gid
    # the close draws exactly what draw_customer draws on the same inputs
    for customer_id, (results, _) in reference.items():
        mine = [
            (e.invoice_id, e.grant_id, e.charge_line_id, -e.amount)
            for e in result.entries
            if e.customer_id == customer_id and e.entry_type == "draw"
        ]
        theirs = [
            (r.invoice.invoice_id, gid, line, amount)
            for r in results
            for gid, line, amount in r.promotional
        ] + [(r.invoice.invoice_id, gid, None, amount) for r in results for gid, amount in r.paid]
        assert sorted(mine, key=repr) == sorted(theirs, key=repr)


@SETTINGS
@given(closes())
def test_draw_entries_match_the_credit_lines_and_credits_applied(case):
    inputs, coverage = case
    result = close_wallets(inputs, coverage)
    assert draws_whole(inputs, result)
    for invoice in inputs.invoices:
        iid = invoice.invoice_id
        drawn = sum(
            (e.amount for e in result.entries if e.entry_type == "draw" and e.invoice_id == iid),
            ZERO,
        )
        promotional = sum(
            (
                ln.amount
                for ln in result.lines
                if ln.invoice_id == iid and ln.kind == "promotional_credit"
            ),
            ZERO,
        )
        # draws are negative, promotional_credit lines negative, credits_applied positive
        assert drawn == promotional - result.credits_applied.get(iid, ZERO), iid
    # one promotional_credit line per (invoice, grant), one credit_purchase line per purchase
    keys = [(ln.invoice_id, ln.kind, ln.grant.grant_id) for ln in result.lines]
    assert len(keys) == len(set(keys))
    bought = sorted(
        (e.invoice_id, e.grant_id)
        for e in result.entries
        if e.entry_type == "grant" and e.invoice_id
    )
    purchase_lines = [
        (ln.invoice_id, ln.grant.grant_id) for ln in result.lines if ln.kind == "credit_purchase"
    ]
    assert set(bought) <= set(purchase_lines)


@SETTINGS
@given(closes())
def test_amount_due_is_never_negative(case):
    inputs, coverage = case
    result = close_wallets(inputs, coverage)
    for results, _ in reference_draws(inputs, result.entries, coverage).values():
        for r in results:
            purchases = sum((g.amount for g in r.invoice.purchases), ZERO)
            amount_due = r.total - r.credits_applied
            assert amount_due >= 0
            # paid credits never pay for the credits being bought
            assert r.credits_applied <= max(r.total - purchases, ZERO)
            assert r.credits_applied == result.credits_applied.get(r.invoice.invoice_id, ZERO)


def _draws_are_whole(inputs: CloseInputs, coverage: dict) -> None:
    exponents = {inv.invoice_id: inv.exponent for inv in inputs.invoices}
    result = close_wallets(inputs, coverage)
    for e in result.entries:
        if e.entry_type == "draw":
            assert is_whole(e.amount, exponents[e.invoice_id]), e
    for ln in result.lines:
        assert is_whole(ln.amount, exponents[ln.invoice_id]), ln


@SETTINGS
@given(closes(discounts=False))
def test_draws_are_whole_minor_units_without_discounts(case):
    _draws_are_whole(*case)


def _discounted_two_grants() -> tuple[CloseInputs, dict]:
    """Usage 1.00 and 2.00 with a 1.00 discount on usage: credits may pay 0.666.. and
    1.333..; grant a (0.10, expires first) pays 0.10 of the first line, then grant b pays
    `payable - drawn` = 0.5666.. of it instead of 0.56."""
    start, end = BASE, BASE + timedelta(days=DAYS)
    span = Span(start, end)
    lines = (
        Line("u1", 1, "usage", "usage", D("1.00"), span),
        Line("u2", 2, "usage", "usage", D("2.00"), span),
        Line("d", 3, "discount", "discount", D("-1.00"), span, discount_applies_to="usage"),
    )
    grants = [
        Grant("a", "c0", "promotional", D("0.10"), start, end + timedelta(days=30)),
        Grant("b", "c0", "promotional", D("10.00"), start, None),
    ]
    invoice = CloseInvoice("inv", "c0", "sub", "USD", 2, ZERO, start, end, lines=lines)
    return CloseInputs("2026-10", date(2026, 11, 1), [], grants, [invoice]), {}


@SETTINGS
@given(closes())
@example(_discounted_two_grants())
def test_draws_are_whole_minor_units(case):
    _draws_are_whole(*case)


def _credit_priced_leftover() -> tuple[CloseInputs, dict]:
    """g (60.50) covers 60 units of a 100-unit credit-priced line (120.00): it draws 60.00 in
    the credit-price pass and the 0.50 left in the next, two entries with one entry_id."""
    start, end = BASE, BASE + timedelta(days=DAYS)
    line = Line("cp", 1, "usage", "usage", D("120.00"), Span(start, end), credit_price=D("1"))
    grants = [Grant("g", "c0", "promotional", D("60.50"), start, None)]
    invoice = CloseInvoice("inv", "c0", "sub", "USD", 2, ZERO, start, end, lines=(line,))
    return CloseInputs("2026-10", date(2026, 11, 1), [], grants, [invoice]), {
        ("inv", "cp"): [("g", D(60))]
    }


@SETTINGS
@given(closes())
@example(_credit_priced_leftover())
def test_entry_ids_are_unique(case):
    result = close_wallets(*case)
    ids = [e.entry_id for e in result.entries]
    assert len(ids) == len(set(ids))


@SETTINGS
@given(closes(credit_prices=False))
def test_entry_ids_are_unique_without_credit_prices(case):
    result = close_wallets(*case)
    ids = [e.entry_id for e in result.entries]
    assert len(ids) == len(set(ids))
    line_ids = [ln.line_id for ln in result.lines]
    assert len(line_ids) == len(set(line_ids))


@SETTINGS
@given(closes(), st.randoms(use_true_random=False))
def test_a_close_rerun_gives_the_same_ledger(case, rnd: random.Random):
    inputs, coverage = case
    first = close_wallets(inputs, coverage)
    again = close_wallets(inputs, coverage)
    assert again.entries == first.entries
    assert again.lines == first.lines
    assert again.credits_applied == first.credits_applied
    assert [e.entry_id for e in again.entries] == [e.entry_id for e in first.entries]
    # nor does the order the inputs come in matter
    grants, invoices = list(inputs.catalog_grants), list(inputs.invoices)
    rnd.shuffle(grants)
    rnd.shuffle(invoices)
    shuffled = CloseInputs(inputs.close_month, inputs.month_end, [], grants, invoices)
    assert close_wallets(shuffled, coverage).entries == first.entries
    # a close of the next month starting from this ledger never redraws this month's lines
    later = CloseInputs("2026-11", date(2026, 12, 1), first.entries, inputs.catalog_grants, [])
    assert not [e for e in close_wallets(later).entries if e.entry_type == "draw"]
