"""Hand-checked wallet draws (SPEC 7, money as SPEC 3.4): the pure engine of
orchestration/billing/wallets (grants.py, draw.py, close.py), one example per rule.

Each test writes its arithmetic above it. October 2026 has 31 days: [Oct 1, Nov 1)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from orchestration.billing.wallets import close as wallet_close
from orchestration.billing.wallets.close import (
    CloseInputs,
    CloseInvoice,
    CreditLine,
    PlanGrant,
    close_wallets,
    credit_coverage,
    credit_line_id,
    wallets_from,
)
from orchestration.billing.wallets.draw import (
    Invoice,
    Line,
    cover_credit_priced,
    draw_customer,
    payable_amounts,
)
from orchestration.billing.wallets.grants import Grant, Span, drawing_order, floor_to

D = Decimal
OCT1, NOV1, DEC1 = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)
OCTOBER = Span(OCT1, NOV1)


def grant(
    gid: str,
    amount: str,
    kind: str = "promotional",
    granted_on: date = OCT1,
    expires_on: date | None = None,
    priority: int = 10,
    applies_to: str | None = None,
    customer_id: str = "delta",
) -> Grant:
    # the catalog's default scope: usage for promotional, all for paid
    scope = applies_to or ("usage" if kind == "promotional" else "all")
    return Grant(gid, customer_id, kind, D(amount), granted_on, expires_on, priority, scope)


def usage(line_id: str, no: int, amount: str, span: Span = OCTOBER, **kw) -> Line:
    return Line(line_id, no, "usage", "usage", D(amount), span, **kw)


def fee(line_id: str, no: int, amount: str, span: Span = OCTOBER) -> Line:
    return Line(line_id, no, "fixed_fee", "fixed_fees", D(amount), span)


def invoice(
    lines: list[Line],
    tax_rate: str = "0",
    exponent: int = 2,
    purchases: tuple[Grant, ...] = (),
    invoice_id: str = "inv_oct",
) -> Invoice:
    return Invoice(invoice_id, "sub_delta", exponent, D(tax_rate), tuple(lines), purchases)


def close_invoice(lines: list[Line], **kw) -> CloseInvoice:
    fields = {
        "invoice_id": "inv_oct",
        "customer_id": "delta",
        "subscription_id": "sub_delta",
        "currency": "USD",
        "exponent": 2,
        "tax_rate": D("0"),
        "period_start": OCT1,
        "period_end": NOV1,
        "lines": tuple(lines),
    }
    fields.update(kw)
    return CloseInvoice(**fields)


def close_inputs(invoices: list[CloseInvoice], grants=(), prior=(), month="2026-10"):
    month_end = max(inv.period_end for inv in invoices) if invoices else NOV1
    return CloseInputs(month, month_end, list(prior), list(grants), list(invoices))


def balances_of(entries) -> dict[str, Decimal]:
    return dict(wallets_from(list(entries))["delta"].balances)


# --- SPEC's wallet_basic (shared/scenarios-wave2/wallet_basic) -----------------------------

# tokens 2000 x 0.01 = 20.00 (usage); platform fee 10.00 (fixed_fees)
# promotional 15.00, applies_to usage: pays min(15.00, 20.00) = 15.00 of the usage line
# credit_purchase 50.00 (paid pack bought on this invoice)
# subtotal = 10.00 + 20.00 - 15.00 + 50.00 = 65.00
# tax = 20% of (65.00 - 50.00) = 3.00; total = 68.00
# paid credits pay at most total - purchases = 68.00 - 50.00 = 18.00 -> credits_applied 18.00
# amount_due = 68.00 - 18.00 = 50.00; paid balance left 50.00 - 18.00 = 32.00
PROMO = grant("g_delta_promo", "15.00")
PACK = grant("g_delta_pack", "50.00", kind="paid")
BASIC_LINES = [fee("li_fee", 1, "10.00"), usage("li_tokens", 2, "20.00")]


def test_wallet_basic_draws():
    balances = {PROMO.grant_id: D("15.00"), PACK.grant_id: D("50.00")}
    inv = invoice(BASIC_LINES, tax_rate="0.20", purchases=(PACK,))
    [result] = draw_customer([inv], [PROMO, PACK], balances)
    assert result.promotional == [("g_delta_promo", "li_tokens", D("15.00"))]
    assert result.tax == D("3.00")
    assert result.total == D("68.00")
    assert result.paid == [("g_delta_pack", D("18.00"))]
    assert result.credits_applied == D("18.00")
    assert result.total - result.credits_applied == D("50.00")  # amount_due
    assert balances == {"g_delta_promo": D("0.00"), "g_delta_pack": D("32.00")}


def test_wallet_basic_close_entries_and_lines():
    inputs = close_inputs([close_invoice(BASIC_LINES, tax_rate=D("0.20"))], grants=[PACK, PROMO])
    result = close_wallets(inputs)
    purchase_line = credit_line_id("inv_oct", "credit_purchase", "g_delta_pack")
    promo_line = credit_line_id("inv_oct", "promotional_credit", "g_delta_promo")
    got = [
        (
            e.entry_type,
            e.grant_id,
            e.grant_kind,
            e.amount,
            e.entry_date,
            e.invoice_id,
            e.line_id,
            e.charge_line_id,
        )
        for e in result.entries
    ]
    assert got == [
        # grants, by id: the pack is bought on the invoice (its credit_purchase line)
        ("grant", "g_delta_pack", "paid", D("50.00"), OCT1, "inv_oct", purchase_line, None),
        ("grant", "g_delta_promo", "promotional", D("15.00"), OCT1, None, None, None),
        # the promotional draw names the invoice, its promotional_credit line and the usage line
        (
            "draw",
            "g_delta_promo",
            "promotional",
            D("-15.00"),
            NOV1,
            "inv_oct",
            promo_line,
            "li_tokens",
        ),
        # the paid draw (credits_applied) names the invoice only
        ("draw", "g_delta_pack", "paid", D("-18.00"), NOV1, "inv_oct", None, None),
    ]
    assert all(e.currency == "USD" and e.customer_id == "delta" for e in result.entries)
    assert [e.grant for e in result.entries[:2]] == [PACK, PROMO]
    assert result.lines == [
        CreditLine("inv_oct", purchase_line, "credit_purchase", PACK, D("50.00")),
        CreditLine("inv_oct", promo_line, "promotional_credit", PROMO, D("-15.00")),
    ]
    assert result.credits_applied == {"inv_oct": D("18.00")}
    assert balances_of(result.entries) == {"g_delta_pack": D("32.00"), "g_delta_promo": D("0")}
    assert len({e.entry_id for e in result.entries}) == len(result.entries)


# --- drawing order ----------------------------------------------------------------------


# usage 25.00; three promotional grants of 10.00, same priority, all valid all October:
# c (expires Dec 1) first: 10.00; b (expires Jan 1) next: 10.00; a (never) last: 25 - 20 = 5.00
def test_equal_priority_earlier_expiry_first_never_last():
    a = grant("a_never", "10.00", granted_on=date(2026, 9, 1))
    b = grant("b_late", "10.00", granted_on=date(2026, 9, 1), expires_on=date(2027, 1, 1))
    c = grant("c_early", "10.00", granted_on=date(2026, 9, 1), expires_on=DEC1)
    balances = {g.grant_id: g.amount for g in (a, b, c)}
    [result] = draw_customer([invoice([usage("li_u", 1, "25.00")])], [a, b, c], balances)
    assert result.promotional == [
        ("c_early", "li_u", D("10.00")),
        ("b_late", "li_u", D("10.00")),
        ("a_never", "li_u", D("5.00")),
    ]
    assert balances == {"a_never": D("5.00"), "b_late": D("0.00"), "c_early": D("0.00")}


def test_drawing_order_priority_then_expiry_then_granted_on_then_id():
    sep1, sep15 = date(2026, 9, 1), date(2026, 9, 15)
    first = grant(
        "z_first", "1.00", priority=0
    )  # lowest priority wins even though it never expires
    early = grant("y_early", "1.00", expires_on=DEC1, granted_on=sep15)
    # same expiry as y: the earlier granted_on first
    older = grant("x_older", "1.00", expires_on=DEC1, granted_on=sep1)
    # same expiry and granted_on: by id
    tie_a = grant("t_a", "1.00", expires_on=date(2027, 1, 1), granted_on=sep1)
    tie_b = grant("t_b", "1.00", expires_on=date(2027, 1, 1), granted_on=sep1)
    never_old = grant("n_old", "1.00", granted_on=sep1)
    never_new = grant("m_new", "1.00", granted_on=sep15)
    grants = [never_new, tie_b, never_old, early, tie_a, older, first]
    assert [g.grant_id for g in drawing_order(grants)] == [
        "z_first",
        "x_older",
        "y_early",
        "t_a",
        "t_b",
        "n_old",
        "m_new",
    ]


# --- a grant valid for part of a line ---------------------------------------------------


# usage 100.00 over 31 days; grant valid Oct 1..Oct 11 (expires_on exclusive) = 10 days
# pays 100.00 x 10/31 = 32.2580.. -> rounded DOWN: 32.25 (half-up would give 32.26)
# a second grant valid from Oct 11 (21 days): 100.00 x 21/31 = 67.7419.. -> 67.74
# together 99.99: the cent lost to rounding down is not paid by credits
def test_share_by_days_rounds_down():
    first = grant("g_first", "500.00", granted_on=date(2026, 9, 1), expires_on=date(2026, 10, 11))
    second = grant("g_second", "500.00", granted_on=date(2026, 10, 11))
    balances = {"g_first": D("500.00"), "g_second": D("500.00")}
    [result] = draw_customer([invoice([usage("li_u", 1, "100.00")])], [second, first], balances)
    assert result.promotional == [
        ("g_first", "li_u", D("32.25")),
        ("g_second", "li_u", D("67.74")),
    ]
    assert result.total == D("0.01")


# daily quantities: Oct 5 -> 1 unit, Oct 20 -> 2 units; the line is 1.00 for 3 units
# grant from Oct 10 is valid for 2 of the 3 units: 1.00 x 2/3 = 0.666.. -> 0.66
# (by days it would be 22/31 x 1.00 = 0.70: daily quantities decide, not days)
def test_share_by_daily_quantity_rounds_down():
    span = Span(OCT1, NOV1, ((date(2026, 10, 5), D(1)), (date(2026, 10, 20), D(2))))
    late = grant("g_late", "50.00", granted_on=date(2026, 10, 10))
    assert span.share(late) == D(2) / D(3)
    balances = {"g_late": D("50.00")}
    [result] = draw_customer([invoice([usage("li_u", 1, "1.00", span=span)])], [late], balances)
    assert result.promotional == [("g_late", "li_u", D("0.66"))]
    assert balances == {"g_late": D("49.34")}


# the daily usage a line is handed may hold days outside its own [start, end): the load reads
# a day either side of the period, and per meter and group, not per segment. Only the line's
# own days count, above and below the share.
# October line 20.00 for 100 tokens/day Oct 1..20 (2,000), plus 500 on Sep 30 and on Nov 1:
# g valid Oct 1..Oct 16 (15 days) -> 1,500 / 2,000 = 3/4 -> 15.00 (not 1,500 / 3,000 -> 10.00)
# g from Oct 11 -> 1,000 / 2,000 = 1/2 -> 10.00 (not 1,000 / 3,000 -> 6.66)
OCTOBER_AND_AROUND = Span(
    OCT1,
    NOV1,
    (
        (date(2026, 9, 30), D(500)),
        *((date(2026, 10, day), D(100)) for day in range(1, 21)),
        (NOV1, D(500)),
    ),
)


@pytest.mark.parametrize(
    ("granted_on", "expires_on", "share", "paid"),
    [
        (OCT1, date(2026, 10, 16), D(3) / D(4), D("15.00")),
        (date(2026, 10, 11), None, D(1) / D(2), D("10.00")),
    ],
)
def test_share_counts_only_the_lines_own_days(granted_on, expires_on, share, paid):
    g = grant("g", "50.00", granted_on=granted_on, expires_on=expires_on)
    assert OCTOBER_AND_AROUND.share(g) == share
    balances = {"g": D("50.00")}
    line = usage("li_u", 1, "20.00", span=OCTOBER_AND_AROUND)
    [result] = draw_customer([invoice([line])], [g], balances)
    assert result.promotional == [("g", "li_u", paid)]


# a period cut into segments (SPEC 3.3, an override from Oct 11): each segment's line is
# handed the month's daily usage, 100 tokens/day Oct 1..20. Segment 1 [Oct 1, Oct 11) is
# 10.00 for 1,000 units, segment 2 [Oct 11, Nov 1) 20.00 for 1,000. g from Oct 6 is valid
# for 500 of segment 1's 1,000 units -> 5.00 (not 500 / 2,000 -> 2.50), all of segment 2
# -> 20.00: 25.00 in all
OCT11 = date(2026, 10, 11)
MONTH_DAILY = tuple((date(2026, 10, day), D(100)) for day in range(1, 21))
SEGMENT_1, SEGMENT_2 = Span(OCT1, OCT11, MONTH_DAILY), Span(OCT11, NOV1, MONTH_DAILY)


def test_segment_share_counts_only_the_segments_days():
    g = grant("g", "100.00", granted_on=date(2026, 10, 6))
    assert (SEGMENT_1.share(g), SEGMENT_2.share(g)) == (D(1) / D(2), D(1))
    balances = {"g": D("100.00")}
    lines = [usage("li_s1", 1, "10.00", span=SEGMENT_1), usage("li_s2", 2, "20.00", span=SEGMENT_2)]
    [result] = draw_customer([invoice(lines)], [g], balances)
    assert result.promotional == [("g", "li_s1", D("5.00")), ("g", "li_s2", D("20.00"))]
    assert balances == {"g": D("75.00")}


# a grant that ends before the line's days, or starts after them, pays nothing of it
def test_grant_outside_the_line_pays_nothing():
    before = grant("g_before", "10.00", granted_on=date(2026, 9, 1), expires_on=OCT1)
    after = grant("g_after", "10.00", granted_on=NOV1)
    balances = {"g_before": D("10.00"), "g_after": D("10.00")}
    [result] = draw_customer([invoice([usage("li_u", 1, "5.00")])], [before, after], balances)
    assert result.promotional == []
    assert balances == {"g_before": D("10.00"), "g_after": D("10.00")}


# --- discounts ---------------------------------------------------------------------------


# usage 6.00 and 4.00, discount -2.00 on usage: each line bears the discount in proportion
# 6.00 - 2.00 x 6/10 = 4.80; 4.00 - 2.00 x 4/10 = 3.20; a large grant pays exactly those
# subtotal = 6.00 + 4.00 - 2.00 - 4.80 - 3.20 = 0.00
def test_discount_lowers_what_credits_pay():
    lines = [
        usage("li_a", 1, "6.00"),
        usage("li_b", 2, "4.00"),
        Line("li_d", 3, "discount", "discount", D("-2.00"), OCTOBER, discount_applies_to="usage"),
    ]
    inv = invoice(lines, tax_rate="0.10")
    assert payable_amounts(inv) == {"li_a": D("4.80"), "li_b": D("3.20")}
    balances = {"g": D("100.00")}
    [result] = draw_customer([inv], [grant("g", "100.00")], balances)
    assert result.promotional == [("g", "li_a", D("4.80")), ("g", "li_b", D("3.20"))]
    assert result.tax == D("0.00") and result.total == D("0.00")
    assert balances == {"g": D("92.00")}


# a discount on fixed fees does not lower what a grant pays for usage
# usage 10.00, fee 10.00, discount -5.00 on fixed_fees: payable usage 10.00, fee 5.00
def test_discount_on_fees_leaves_usage_alone():
    lines = [
        usage("li_u", 1, "10.00"),
        fee("li_f", 2, "10.00"),
        Line(
            "li_d",
            3,
            "discount",
            "discount",
            D("-5.00"),
            OCTOBER,
            discount_applies_to="fixed_fees",
        ),
    ]
    assert payable_amounts(invoice(lines)) == {"li_u": D("10.00"), "li_f": D("5.00")}


# two grants on discounted lines: usage 1.00 and 2.00, discount -1.00 on usage
# credits may pay 1.00 - 1.00 x 1/3 = 0.666.. of u1 and 2.00 - 1.00 x 2/3 = 1.333.. of u2,
# i.e. at most 0.66 and 1.33 (rounded down to the cent)
# a (0.10, expires first) pays 0.10 of u1; b pays the rest of u1: 0.66 - 0.10 = 0.56,
# then 1.33 of u2 -> b left 10.00 - 1.89 = 8.11; total 3.00 - 1.00 - 1.99 = 0.01
def test_second_grant_on_a_discounted_line_draws_whole_cents():
    lines = [
        usage("u1", 1, "1.00"),
        usage("u2", 2, "2.00"),
        Line("d", 3, "discount", "discount", D("-1.00"), OCTOBER, discount_applies_to="usage"),
    ]
    a = grant("a", "0.10", expires_on=DEC1)
    b = grant("b", "10.00")
    balances = {"a": D("0.10"), "b": D("10.00")}
    [result] = draw_customer([invoice(lines)], [a, b], balances)
    assert result.promotional == [
        ("a", "u1", D("0.10")),
        ("b", "u1", D("0.56")),
        ("b", "u2", D("1.33")),
    ]
    assert result.total == D("0.01")
    assert balances == {"a": D("0.00"), "b": D("8.11")}


# --- zero-decimal currency ---------------------------------------------------------------


# JPY (exponent 0): usage 1000 over 31 days
# promotional grant valid Oct 22..Nov 1 (10 days): 1000 x 10/31 = 322.58 -> 322 (down)
# tax 10% of (1000 - 322) = 67.8 -> 68 (half-up, once); total = 678 + 68 = 746
# paid grant (applies_to all) valid from Oct 22 too: of what is left (678, all usage) it may
# pay 10/31: 746 x 10/31 = 240.64 -> 240 (down)
def test_jpy_rounds_down_to_the_yen():
    promo = grant("g_promo", "5000", granted_on=date(2026, 10, 22))
    paid = grant("g_paid", "5000", kind="paid", granted_on=date(2026, 10, 22))
    balances = {"g_promo": D(5000), "g_paid": D(5000)}
    inv = invoice([usage("li_u", 1, "1000")], tax_rate="0.10", exponent=0)
    [result] = draw_customer([inv], [promo, paid], balances)
    assert result.promotional == [("g_promo", "li_u", D(322))]
    assert result.tax == D(68) and result.total == D(746)
    assert result.paid == [("g_paid", D(240))]
    assert balances == {"g_promo": D(4678), "g_paid": D(4760)}


def test_floor_to_minor_units():
    assert floor_to(D("322.999"), 0) == D(322)
    assert floor_to(D("0.019"), 2) == D("0.01")
    assert floor_to(D("1.2349"), 3) == D("1.234")


# --- credits larger than the invoice ----------------------------------------------------


# usage 20.00, fee 5.00, tax 10%
# promotional 100.00 (usage) pays 20.00 -> 80.00 left
# tax 10% of (25.00 - 20.00) = 0.50; total 5.50
# paid 200.00 (bought earlier, not on this invoice) pays 5.50 -> 194.50 left
# amount_due = 5.50 - 5.50 = 0.00, never negative
def test_credits_larger_than_the_invoice():
    promo = grant("g_promo", "100.00")
    paid = grant("g_paid", "200.00", kind="paid", granted_on=date(2026, 9, 1))
    balances = {"g_promo": D("100.00"), "g_paid": D("200.00")}
    inv = invoice([usage("li_u", 1, "20.00"), fee("li_f", 2, "5.00")], tax_rate="0.10")
    [result] = draw_customer([inv], [promo, paid], balances)
    assert result.promotional == [("g_promo", "li_u", D("20.00"))]
    assert result.tax == D("0.50") and result.total == D("5.50")
    assert result.paid == [("g_paid", D("5.50"))]
    assert result.total - result.credits_applied == D("0.00")
    assert balances == {"g_promo": D("80.00"), "g_paid": D("194.50")}


# two paid grants over two invoices, a grant drawn over every invoice before the next grant:
# invoice 1 total 30.00, invoice 2 total 15.00; p1 (expires first) 40.00 pays 30.00 then 10.00;
# p2 pays the 5.00 left of invoice 2. Both amounts due 0.00.
def test_paid_grants_over_two_invoices():
    p1 = grant("p1", "40.00", kind="paid", granted_on=date(2026, 9, 1), expires_on=date(2027, 1, 1))
    p2 = grant("p2", "40.00", kind="paid", granted_on=date(2026, 9, 1))
    inv1 = invoice([fee("li_1", 1, "30.00")], invoice_id="inv_1")
    inv2 = invoice([fee("li_2", 1, "15.00")], invoice_id="inv_2")
    balances = {"p1": D("40.00"), "p2": D("40.00")}
    r1, r2 = draw_customer([inv1, inv2], [p2, p1], balances)
    assert r1.paid == [("p1", D("30.00"))]
    assert r2.paid == [("p1", D("10.00")), ("p2", D("5.00"))]
    assert r1.total - r1.credits_applied == 0 and r2.total - r2.credits_applied == 0
    assert balances == {"p1": D("0.00"), "p2": D("35.00")}


# --- credit price ------------------------------------------------------------------------


# one grant valid all October, B = 60.50, credit_price 1.00, q = 100:
# q_credit = min(100, floor(60.50 / 1.00)) = 60
def test_credit_price_one_grant():
    g = grant("g", "60.50")
    balances = {"g": D("60.50")}
    covered = cover_credit_priced([("k", D(100), D("1.00"), OCTOBER)], [g], balances)
    assert covered == {"k": [("g", D(60))]}
    assert balances == {"g": D("60.50")}  # not changed


# two grants in drawing order: g1 (expires Dec 1) B = 30.50 covers floor(30.50) = 30 units;
# g2 (never) B = 100.00 covers min(100 - 30, floor(100.00)) = 70
def test_credit_price_two_grants_in_order():
    g1 = grant("g1", "30.50", expires_on=DEC1)
    g2 = grant("g2", "100.00")
    balances = {"g1": D("30.50"), "g2": D("100.00")}
    covered = cover_credit_priced([("k", D(100), D("1.00"), OCTOBER)], [g2, g1], balances)
    assert covered == {"k": [("g1", D(30)), ("g2", D(70))]}


# a grant valid for part of the line only covers the units incurred while it was valid:
# daily Oct 5 -> 40 units, Oct 25 -> 60 units; g from Oct 20 (B = 1000.00, price 0.50)
# q_g = 60, floor(1000.00 / 0.50) = 2000 -> 60 units
def test_credit_price_partial_validity():
    span = Span(OCT1, NOV1, ((date(2026, 10, 5), D(40)), (date(2026, 10, 25), D(60))))
    g = grant("g", "1000.00", granted_on=date(2026, 10, 20))
    covered = cover_credit_priced([("k", D(100), D("0.50"), span)], [g], {"g": D("1000.00")})
    assert covered == {"k": [("g", D(60))]}


# the same on credit-priced segment lines: g from Oct 6 covers 500 of segment 1's 1,000
# units (not 1,000 x 500 / 2,000 = 250) and all 1,000 of segment 2's (B = 1000.00, price 0.50)
def test_credit_price_partial_validity_per_segment():
    g = grant("g", "1000.00", granted_on=date(2026, 10, 6))
    lines = [("k1", D(1000), D("0.50"), SEGMENT_1), ("k2", D(1000), D("0.50"), SEGMENT_2)]
    covered = cover_credit_priced(lines, [g], {"g": D("1000.00")})
    assert covered == {"k1": [("g", D(500))], "k2": [("g", D(1000))]}


# credit-priced lines draw before every other line: line 1 usage 100.00 (no credit price),
# line 2 credit-priced: 60 units at 1.00 + 40 at 1.50 = 120.00, g covered 60 units
# pass 1: g pays 60 x 1.00 = 60.00 of line 2 -> 0.50 left; pass 2, line order: 0.50 of line 1
def test_credit_priced_lines_draw_first():
    g = grant("g", "60.50")
    lines = [
        usage("li_plain", 1, "100.00"),
        usage("li_cp", 2, "120.00", credit_price=D("1.00"), covered=(("g", D(60)),)),
    ]
    balances = {"g": D("60.50")}
    [result] = draw_customer([invoice(lines)], [g], balances)
    assert result.promotional == [("g", "li_cp", D("60.00")), ("g", "li_plain", D("0.50"))]
    assert balances == {"g": D("0.00")}


# the same grant paying a credit-priced line in both passes: g (60.50) covers 60 units of the
# only line (120.00 = 60 x 1.00 + 40 x 1.50): pass 1 draws 60.00, pass 2 the 0.50 left
# -> two draw entries (g, inv_oct, li_cp) of one close: their entry_id must still differ, as
# meterbook_ledger.wallet_entries.entry_id is the PRIMARY KEY finalization inserts into
def test_two_draws_on_a_credit_priced_line_have_distinct_entry_ids():
    g = grant("g", "60.50")
    inputs = close_inputs(
        [close_invoice([usage("li_cp", 1, "120.00", credit_price=D("1.00"))])], grants=[g]
    )
    coverage = credit_coverage(inputs, [("inv_oct", "li_cp", D(100), D("1.00"), OCTOBER)])
    assert coverage == {("inv_oct", "li_cp"): [("g", D(60))]}
    result = close_wallets(inputs, coverage)
    draws = [
        (e.grant_id, e.charge_line_id, e.amount) for e in result.entries if e.entry_type == "draw"
    ]
    assert sum(amount for _, _, amount in draws) == D("-60.50")
    ids = [e.entry_id for e in result.entries]
    assert len(ids) == len(set(ids))


# credit_coverage sees the grants the close makes: a catalog grant of 60.50 covers 60 units
def test_credit_coverage_through_the_close():
    inputs = close_inputs([close_invoice([])], grants=[grant("g", "60.50")])
    coverage = credit_coverage(inputs, [("inv_oct", "li_cp", D(100), D("1.00"), OCTOBER)])
    assert coverage == {("inv_oct", "li_cp"): [("g", D(60))]}


# --- expiry and rollover -----------------------------------------------------------------

MONTHLY = PlanGrant("monthly", "promotional", D("100.00"), "period", rollover_max=D("20.00"))
GID = "sub_delta:monthly:2026-10-01"  # a period grant's id: subscription, code, period start


def rolled_id(entries) -> str:
    """The id of the grant a rollover made (its format is the close's business)."""
    [gid] = [e.grant_id for e in entries if e.grant is not None and e.grant.source == "rollover"]
    assert gid != GID
    return gid


# plan grant of 100.00 for October, rollover max 20.00; usage 70.00 -> 30.00 unused
# at its end (Nov 1): rollover -20.00 into a new grant of 20.00 [Nov 1, Dec 1), expire -10.00
def test_rollover_up_to_max_and_the_rest_expires():
    inv = close_invoice([usage("li_u", 1, "70.00")], plan_grants=(MONTHLY,), next_period_end=DEC1)
    result = close_wallets(close_inputs([inv]))
    rolled = rolled_id(result.entries)
    got = [(e.entry_type, e.grant_id, e.amount, e.entry_date) for e in result.entries]
    assert got == [
        ("grant", GID, D("100.00"), OCT1),
        ("draw", GID, D("-70.00"), NOV1),
        ("rollover", GID, D("-20.00"), NOV1),
        ("grant", rolled, D("20.00"), NOV1),
        ("expire", GID, D("-10.00"), NOV1),
    ]
    new = result.entries[3].grant
    assert (new.granted_on, new.expires_on, new.kind, new.amount) == (
        NOV1,
        DEC1,
        "promotional",
        D("20.00"),
    )
    assert new.subscription_id == "sub_delta" and new.source == "rollover"
    assert balances_of(result.entries) == {GID: D("0.00"), rolled: D("20.00")}


# unused 15.00 below the max: all of it rolls over, nothing expires
def test_rollover_below_max_expires_nothing():
    inv = close_invoice([usage("li_u", 1, "85.00")], plan_grants=(MONTHLY,), next_period_end=DEC1)
    result = close_wallets(close_inputs([inv]))
    rolled = rolled_id(result.entries)
    got = [(e.entry_type, e.grant_id, e.amount) for e in result.entries]
    assert got == [
        ("grant", GID, D("100.00")),
        ("draw", GID, D("-85.00")),
        ("rollover", GID, D("-15.00")),
        ("grant", rolled, D("15.00")),
    ]


# the subscription ends with October (no next period): the 30.00 unused all expire
def test_no_rollover_when_the_subscription_ends():
    inv = close_invoice([usage("li_u", 1, "70.00")], plan_grants=(MONTHLY,), next_period_end=None)
    result = close_wallets(close_inputs([inv]))
    got = [(e.entry_type, e.grant_id, e.amount) for e in result.entries]
    assert got == [
        ("grant", GID, D("100.00")),
        ("draw", GID, D("-70.00")),
        ("expire", GID, D("-30.00")),
    ]


# the rolled-over 20.00 pays November's usage (12.00) in the next close
def test_rolled_over_grant_pays_the_next_period():
    oct_inv = close_invoice(
        [usage("li_u", 1, "70.00")], plan_grants=(MONTHLY,), next_period_end=DEC1
    )
    october = close_wallets(close_inputs([oct_inv]))
    rolled = rolled_id(october.entries)
    nov_inv = close_invoice(
        [usage("li_u_nov", 1, "12.00", span=Span(NOV1, DEC1))],
        invoice_id="inv_nov",
        period_start=NOV1,
        period_end=DEC1,
    )
    november = close_wallets(close_inputs([nov_inv], prior=october.entries, month="2026-11"))
    draws = [(e.grant_id, e.amount) for e in november.entries if e.entry_type == "draw"]
    assert draws == [(rolled, D("-12.00"))]
    # expires with November (Dec 1 = the horizon): the 8.00 left expire
    expired = [(e.grant_id, e.amount) for e in november.entries if e.entry_type == "expire"]
    assert expired == [(rolled, D("-8.00"))]


# --- auto top-up -------------------------------------------------------------------------


# paid pack 50.00 bought on October's invoice pays the 45.00 fee -> 5.00 left, below 20.00:
# one paid grant of 100.00 dated the day after the period (period_end, Nov 1)
def test_auto_top_up_once_when_below():
    pack = grant("g_pack", "50.00", kind="paid")
    inv = close_invoice(
        [fee("li_f", 1, "45.00")], next_period_end=DEC1, top_up=(D("20.00"), D("100.00"))
    )
    result = close_wallets(close_inputs([inv], grants=[pack]))
    top_ups = [e for e in result.entries if e.grant is not None and e.grant.source == "top_up"]
    assert len(top_ups) == 1
    [entry] = top_ups
    assert (entry.entry_type, entry.grant_kind, entry.amount, entry.entry_date) == (
        "grant",
        "paid",
        D("100.00"),
        NOV1,
    )
    assert entry.invoice_id is None  # bought on the next invoice, not this one
    assert entry.grant.granted_on == NOV1
    assert balances_of(result.entries)[entry.grant_id] == D("100.00")

    # next close: the top-up is bought on November's invoice (a credit_purchase line) and not
    # granted again
    nov_inv = close_invoice(
        [fee("li_f_nov", 1, "45.00", span=Span(NOV1, DEC1))],
        invoice_id="inv_nov",
        period_start=NOV1,
        period_end=DEC1,
        next_period_end=date(2027, 1, 1),
        top_up=(D("20.00"), D("100.00")),
    )
    november = close_wallets(close_inputs([nov_inv], grants=[pack], prior=result.entries))
    purchases = [ln for ln in november.lines if ln.kind == "credit_purchase"]
    assert [(ln.invoice_id, ln.grant.grant_id, ln.amount) for ln in purchases] == [
        ("inv_nov", entry.grant_id, D("100.00"))
    ]
    assert not [
        e for e in november.entries if e.entry_type == "grant" and e.grant_id == entry.grant_id
    ]


def test_two_invoices_with_top_up_make_one():
    pack = grant("g_pack", "10.00", kind="paid")
    a = close_invoice(
        [fee("li_a", 1, "5.00")],
        subscription_id="sub_a",
        invoice_id="inv_a",
        next_period_end=DEC1,
        top_up=(D("20.00"), D("100.00")),
    )
    b = close_invoice(
        [fee("li_b", 1, "5.00")],
        subscription_id="sub_b",
        invoice_id="inv_b",
        next_period_end=DEC1,
        top_up=(D("30.00"), D("200.00")),
    )
    result = close_wallets(close_inputs([a, b], grants=[pack]))
    top_ups = [e for e in result.entries if e.grant is not None and e.grant.source == "top_up"]
    assert len(top_ups) == 1


@pytest.mark.parametrize(
    ("next_period_end", "below", "expected"),
    [
        (None, "20.00", 0),  # the subscription ends: nothing to buy it on
        (DEC1, "5.00", 0),  # 5.00 left is not below 5.00
        (DEC1, "5.01", 1),
    ],
)
def test_auto_top_up_conditions(next_period_end, below, expected):
    pack = grant("g_pack", "50.00", kind="paid")
    inv = close_invoice(
        [fee("li_f", 1, "45.00")],
        next_period_end=next_period_end,
        top_up=(D(below), D("100.00")),
    )
    result = close_wallets(close_inputs([inv], grants=[pack]))
    top_ups = [e for e in result.entries if e.grant is not None and e.grant.source == "top_up"]
    assert len(top_ups) == expected


# a subscription with an auto top-up and no grant at all (empty wallet): its paid balance 0.00
# is below 50.00, so the close makes one paid grant of 100.00 dated Nov 1, as it would with
# a wallet holding grants (SPEC 7); a customer with neither grants nor top-up is not closed
def test_auto_top_up_of_an_empty_wallet():
    inv = close_invoice(
        [fee("li_f", 1, "45.00")], next_period_end=DEC1, top_up=(D("50.00"), D("100.00"))
    )
    inputs = close_inputs([inv])
    assert inputs.customers() == ["delta"]
    result = close_wallets(inputs)
    got = [(e.entry_type, e.grant_kind, e.amount, e.entry_date) for e in result.entries]
    assert got == [("grant", "paid", D("100.00"), NOV1)]
    assert result.entries[0].grant.source == "top_up"
    assert (result.lines, result.credits_applied) == ([], {})
    assert close_inputs([close_invoice([fee("li_f", 1, "45.00")])]).customers() == []


# --- grants outliving the close: periods not billed yet --------------------------------------

JAN1 = date(2027, 1, 1)
NOV15 = date(2026, 11, 15)


# closes up to month_end bill every period whose last active day is before month_end
@pytest.mark.parametrize(
    ("month_end", "interval", "anchor", "start", "end", "expected"),
    [
        (DEC1, "quarter", "calendar", date(2026, 7, 1), None, (OCT1, None)),  # Q4 open
        (JAN1, "quarter", "calendar", date(2026, 7, 1), None, (JAN1, None)),  # Q4 billed
        (DEC1, "month", "calendar", date(2026, 7, 1), None, (DEC1, None)),
        (NOV1, "month", "anniversary", date(2026, 10, 15), None, (date(2026, 10, 15), None)),
        (DEC1, "year", "calendar", date(2026, 3, 10), JAN1, (date(2026, 3, 10), JAN1)),
        (DEC1, "month", "calendar", date(2027, 2, 1), None, (date(2027, 2, 1), None)),
        (DEC1, "quarter", "calendar", date(2026, 7, 1), DEC1, None),  # ended: all billed
    ],
)
def test_unbilled_days(month_end, interval, anchor, start, end, expected):
    assert wallet_close.unbilled_days(month_end, interval, anchor, start, end) == expected


def quarter_close(month: str, month_end: date, unbilled, invoices=(), prior=()) -> CloseInputs:
    inputs = CloseInputs(month, month_end, list(prior), [Q1_GRANT], list(invoices))
    inputs.unbilled = {"delta": unbilled}  # what load.py reads from the subscriptions
    return inputs


Q1_GRANT = grant("gq1", "50.00", granted_on=OCT1, expires_on=NOV15)


# quarterly calendar plan, grant 50.00 valid [Oct 1, Nov 15), usage 20.00 on Oct 1-20.
# The November close bills nothing of this customer, but Q4 (not billed yet) can still draw
# on the grant: it does not expire there. The December close bills Q4: the grant pays the
# 20.00 incurred while valid (all of it), then expires (-30.00, dated Nov 15).
def test_grant_waits_for_the_quarter_that_can_draw_on_it():
    october = close_wallets(quarter_close("2026-10", NOV1, [(OCT1, None)]))
    assert [(e.entry_type, e.amount) for e in october.entries] == [("grant", D("50.00"))]
    november = close_wallets(quarter_close("2026-11", DEC1, [(OCT1, None)], prior=october.entries))
    assert november.entries == []

    daily = tuple((date(2026, 10, day), D("1")) for day in range(1, 21))
    q4 = close_invoice(
        [usage("li_u", 1, "20.00", span=Span(OCT1, JAN1, daily))],
        invoice_id="inv_q4",
        period_start=OCT1,
        period_end=JAN1,
        next_period_end=date(2027, 4, 1),
    )
    prior = october.entries + november.entries
    december = close_wallets(quarter_close("2026-12", JAN1, [(JAN1, None)], [q4], prior))
    got = [(e.entry_type, e.amount, e.entry_date) for e in december.entries]
    assert got == [("draw", D("-20.00"), JAN1), ("expire", D("-30.00"), NOV15)]
    assert [(ln.kind, ln.amount) for ln in december.lines] == [("promotional_credit", D("-20.00"))]
