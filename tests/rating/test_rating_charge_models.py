"""Charge models (SPEC 3.2), run through the very macros the dbt models use.

Each model is tested at q = 0, 1, exactly at each up_to, just past it, at a fractional q and
in the open last tier; hypothesis checks the properties that must hold for any tiers.
"""

from __future__ import annotations

from decimal import Decimal

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rating_harness import render_macros

M = render_macros()
TIER_TYPE = (
    "struct(tier integer, tier_from decimal(38, 12), up_to decimal(38, 12), "
    "unit_price decimal(38, 12), flat_fee decimal(38, 12))[]"
)


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    con.execute(str(M.create_decimal_macros()))
    yield con
    con.close()


def dec(value) -> str:
    return f"cast('{Decimal(str(value))}' as decimal(38, 12))"


def tiers_sql(tiers: list[tuple]) -> str:
    """[(up_to or None, unit_price, flat_fee)] as the tier list the models receive."""
    rows, lower = [], Decimal(0)
    for i, (up_to, price, flat) in enumerate(tiers, start=1):
        bound = "null" if up_to is None else dec(up_to)
        rows.append(
            f"{{'tier': {i}, 'tier_from': {dec(lower)}, 'up_to': {bound}, "
            f"'unit_price': {dec(price)}, 'flat_fee': {dec(flat)}}}"
        )
        lower = Decimal(str(up_to)) if up_to is not None else lower
    return f"cast([{', '.join(rows)}] as {TIER_TYPE})"


def breakdown_sql(model: str, **pricing) -> str:
    q = "q"
    if model == "per_unit":
        return str(M.charge_model_per_unit(q, dec(pricing["unit_price"])))
    if model == "package":
        return str(M.charge_model_package(q, dec(pricing["size"]), dec(pricing["price"])))
    if model == "percentage":
        return str(M.charge_model_percentage(q, dec(pricing["rate"])))
    macro = {"graduated": M.charge_model_graduated, "volume": M.charge_model_volume}[model]
    return str(macro(q, tiers_sql(pricing["tiers"])))


def rate_many(con, model: str, quantities: list, **pricing) -> list[tuple[Decimal, list]]:
    """(amount, breakdown) for each quantity, in one query."""
    values = ", ".join(f"({i}, {dec(q)})" for i, q in enumerate(quantities))
    sql = f"""
        select b, {M.charge_model_amount("b")} from (
            select i, {breakdown_sql(model, **pricing)} as b
            from (values {values}) v(i, q)
        ) order by i
    """
    return [(amount, breakdown) for breakdown, amount in con.execute(sql).fetchall()]


def amount(con, model: str, q, **pricing) -> Decimal:
    return rate_many(con, model, [q], **pricing)[0][0]


# --- each model at the edges -------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"), [(0, "0"), (1, "0.4"), ("2.5", "1.0"), ("1000000", "400000")]
)
def test_per_unit(con, q, expected):
    assert amount(con, "per_unit", q, unit_price="0.4") == Decimal(expected)


@pytest.mark.parametrize(
    ("q", "packages"),
    [(0, 0), (1, 1), (1000, 1), ("1000.000000000001", 2), (1001, 2), ("999.5", 1), (3000, 3)],
)
def test_package(con, q, packages):
    (value, breakdown) = rate_many(con, "package", [q], size=1000, price="0.10")[0]
    assert value == Decimal("0.10") * packages
    assert breakdown[0]["quantity"] == packages


@pytest.mark.parametrize(
    ("q", "expected"), [(0, "0"), (1, "0.025"), ("1000.40", "25.01"), ("0.2", "0.005")]
)
def test_percentage(con, q, expected):
    assert amount(con, "percentage", q, rate="2.5") == Decimal(expected)


GRADUATED = [(1000, "0.002", "1.00"), (5000, "0.001", "2.50"), (None, "0.0005", "0")]


@pytest.mark.parametrize(
    ("q", "expected", "entered"),
    [
        (0, "1.00", 1),  # first tier's flat fee even at q = 0
        (1, "1.002", 1),
        (1000, "3.00", 1),  # exactly at up_to: tier 2 not entered
        ("1000.5", "5.5005", 2),  # just past: tier 2's flat fee and half a unit
        (1001, "5.501", 2),
        (5000, "9.50", 2),  # exactly at the second up_to
        (5001, "9.5005", 3),  # the open last tier
        ("6134.567", "10.0672835", 3),  # fractional
        (100000, "57.00", 3),
    ],
)
def test_graduated(con, q, expected, entered):
    (value, breakdown) = rate_many(con, "graduated", [q], tiers=GRADUATED)[0]
    assert value == Decimal(expected)
    assert [t["tier"] for t in breakdown] == list(range(1, entered + 1))
    assert sum(t["quantity"] for t in breakdown) == Decimal(str(q))


def test_graduated_breakdown_explains_each_tier(con):
    (_, breakdown) = rate_many(con, "graduated", ["1000.5"], tiers=GRADUATED)[0]
    assert [(t["tier_from"], t["up_to"], t["quantity"], t["amount"]) for t in breakdown] == [
        (0, 1000, 1000, Decimal("3.00")),
        (1000, 5000, Decimal("0.5"), Decimal("2.5005")),
    ]


VOLUME = [(100, "1.00", "5"), (1000, "0.50", "10"), (None, "0.25", "0")]


@pytest.mark.parametrize(
    ("q", "expected", "tier"),
    [
        (0, "5", 1),  # q = 0 is in the first tier, flat fee included
        (1, "6", 1),
        (100, "105", 1),  # exactly at up_to: still the first tier
        ("100.5", "60.25", 2),  # just past: all of q at the second tier's price
        (1000, "510", 2),
        (1001, "250.25", 3),  # the open last tier
        ("2000.4", "500.1", 3),
    ],
)
def test_volume(con, q, expected, tier):
    (value, breakdown) = rate_many(con, "volume", [q], tiers=VOLUME)[0]
    assert value == Decimal(expected)
    assert [t["tier"] for t in breakdown] == [tier]
    assert breakdown[0]["quantity"] == Decimal(str(q))


# --- properties ---------------------------------------------------------------------------

money = st.decimals(min_value=0, max_value=100, places=4, allow_nan=False, allow_infinity=False)
quantity = st.decimals(
    min_value=0, max_value=10**7, places=3, allow_nan=False, allow_infinity=False
)


@st.composite
def tier_lists(draw, max_tiers=5):
    bounds = sorted(set(draw(st.lists(st.integers(1, 10**6), min_size=0, max_size=max_tiers - 1))))
    prices = draw(st.lists(money, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    flats = draw(st.lists(money, min_size=len(bounds) + 1, max_size=len(bounds) + 1))
    return [(b, p, f) for b, p, f in zip([*bounds, None], prices, flats, strict=True)]


def reference_graduated(q: Decimal, tiers: list[tuple]) -> Decimal:
    """SPEC 3.2 graduated, written independently of the SQL."""
    total, lower = Decimal(0), Decimal(0)
    for i, (up_to, price, flat) in enumerate(tiers):
        if i > 0 and q <= lower:
            break
        top = q if up_to is None else min(q, Decimal(up_to))
        total += max(top - lower, 0) * Decimal(price) + Decimal(flat)
        lower = Decimal(up_to) if up_to is not None else lower
    return total


@settings(max_examples=60, deadline=None)
@given(tiers=tier_lists(), quantities=st.lists(quantity, min_size=1, max_size=30))
def test_graduated_is_the_sum_of_its_tiers(con, tiers, quantities):
    for q, (value, breakdown) in zip(
        quantities, rate_many(con, "graduated", quantities, tiers=tiers), strict=True
    ):
        assert value == sum(t["amount"] for t in breakdown)
        assert value == reference_graduated(q, tiers)
        assert sum(t["quantity"] for t in breakdown) == q


PRICINGS = {
    "per_unit": st.builds(lambda p: {"unit_price": p}, money),
    "package": st.builds(lambda s, p: {"size": s, "price": p}, st.integers(1, 5000), money),
    "percentage": st.builds(lambda r: {"rate": r}, money),
    "graduated": st.builds(lambda t: {"tiers": t}, tier_lists()),
}


@pytest.mark.parametrize("model", sorted(PRICINGS))
@settings(max_examples=40, deadline=None)
@given(data=st.data(), quantities=st.lists(quantity, min_size=2, max_size=30))
def test_no_amount_decreases_when_q_grows(con, model, data, quantities):
    pricing = data.draw(PRICINGS[model])
    ordered = sorted(quantities)
    amounts = [a for a, _ in rate_many(con, model, ordered, **pricing)]
    assert amounts == sorted(amounts)


@settings(max_examples=40, deadline=None)
@given(tiers=tier_lists(), quantities=st.lists(quantity, min_size=2, max_size=30))
def test_volume_never_decreases_inside_a_tier(con, tiers, quantities):
    """Across a boundary volume may drop (all of q moves to a cheaper tier): SPEC 3.2 says so.
    Inside one tier it grows with q."""
    rated = rate_many(con, "volume", sorted(quantities), tiers=tiers)
    by_tier: dict[int, list[Decimal]] = {}
    for value, breakdown in rated:
        by_tier.setdefault(breakdown[0]["tier"], []).append(value)
    for values in by_tier.values():
        assert values == sorted(values)


@settings(max_examples=40, deadline=None)
@given(price=money, flat=money, quantities=st.lists(quantity, min_size=1, max_size=30))
def test_volume_and_graduated_agree_with_a_single_tier(con, price, flat, quantities):
    single = [(None, price, flat)]
    graduated = [a for a, _ in rate_many(con, "graduated", quantities, tiers=single)]
    volume = [a for a, _ in rate_many(con, "volume", quantities, tiers=single)]
    assert graduated == volume
    assert graduated == [q * price + flat for q in quantities]


@settings(max_examples=60, deadline=None)
@given(
    fee=st.decimals(min_value=0, max_value=100000, places=2),
    period_days=st.integers(28, 92),
    data=st.data(),
    exponent=st.sampled_from([0, 2, 3]),
)
def test_prorating_a_fee_over_segments_never_exceeds_the_fee(con, fee, period_days, data, exponent):
    # a price the currency can express
    fee = fee.quantize(Decimal(1).scaleb(-exponent), rounding="ROUND_DOWN")
    cuts = sorted(data.draw(st.sets(st.integers(1, period_days - 1), max_size=6)))
    bounds = [0, *cuts, period_days]
    paid = data.draw(st.lists(st.booleans(), min_size=len(bounds) - 1, max_size=len(bounds) - 1))
    rows = ", ".join(
        f"({b - a}, {str(p).lower()})"
        for a, b, p in zip(bounds[:-1], bounds[1:], paid, strict=True)
    )
    prorated = M.billing_prorated_sum(dec(fee), "days", period_days, "paid")
    rounded = M.billing_round_money(f"coalesce({prorated}, 0)", exponent)
    (value,) = con.execute(f"select {rounded} from (values {rows}) s(days, paid)").fetchone()
    assert 0 <= value <= fee
    if all(paid):
        assert value == fee
