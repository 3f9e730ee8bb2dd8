"""Properties of revenue recognition (SPEC 8) that must hold for any amounts and any ledger.

1. The cumulative-rounding macros (dbt_project/macros/revenue_helpers.sql), run in DuckDB on
   random amounts (USD, JPY, KWD exponents; positive and negative) and random weights
   (positive, or of mixed signs): the parts sum exactly to the amount, and each part is
   round_half_up(A * W_d / W) - round_half_up(A * W_(d-1) / W), computed here with Decimal.
2. The revenue models built by dbt on a random valid ledger (revenue_ledger.py): every line's
   schedule sums to its amount, on its service days; at every month end recognized to date
   + deferred - unbilled = billed per line, and the roll-forward's balances are the ones
   computed here from the generated rows alone; every journal day balances per currency;
   deferred revenue is never negative, and is zero once every service day has passed and every
   paid grant is drawn or expired; building again changes nothing.
"""

from __future__ import annotations

import functools
import os
import sys
from collections import defaultdict
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import duckdb
import jinja2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from revenue_ledger import (
    BY_ID,
    Ledger,
    Warehouse,
    add_months,
    base_warehouse,
    credits_bought_last,
    credits_expired_before_billed,
    expected_schedule,
    ledgers,
    month_range,
    month_text,
    position,
    service_over,
    to_money,
    write_ledger,
)

from orchestration.billing.revenue.checks import (
    check_balances,
    check_deferred,
    check_journal,
    check_schedule_sums,
)
from orchestration.sql import connect
from orchestration.warehouse.models import relation
from orchestration.workspace import DBT_PROJECT_DIR

BIN = Path(sys.executable).parent
D = Decimal

# --- 1. the arithmetic ----------------------------------------------------------------------


@functools.cache
def spread_sql() -> str:
    """One query that spreads `amount` (exponent `exponent`) over the weights in order, through
    the project's own macros, rendered once: the weights' running sums as a dbt model makes
    them, each day's part in minor units, then back to money."""
    text = (DBT_PROJECT_DIR / "macros" / "revenue_helpers.sql").read_text()
    macros = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(text).module
    to_minor = macros.revenue_to_minor("i.amount", "i.exponent")
    part = macros.revenue_cumulative_part("c.amount_minor", "c.upto", "c.weight", "c.whole")
    from_minor = macros.revenue_from_minor("p.part_minor", "p.exponent")
    return f"""
        WITH i AS (SELECT CAST(? AS DECIMAL(38, 12)) AS amount, CAST(? AS INTEGER) AS exponent),
        w AS (
            SELECT d, CAST(w AS DECIMAL(38, 12)) AS weight
            FROM unnest(CAST(? AS VARCHAR[])) WITH ORDINALITY AS t(w, d)
        ),
        c AS (
            SELECT w.d, w.weight, i.exponent, {to_minor} AS amount_minor,
                   sum(w.weight) OVER (ORDER BY w.d ROWS UNBOUNDED PRECEDING) AS upto,
                   sum(w.weight) OVER () AS whole
            FROM w, i
        ),
        p AS (SELECT c.d, c.exponent, {part} AS part_minor FROM c)
        SELECT {from_minor} AS part FROM p ORDER BY p.d
    """


@pytest.fixture(scope="module")
def duck():
    con = duckdb.connect()
    yield con
    con.close()


def spread(con, amount: Decimal, exponent: int, weights: list[Decimal]) -> list[Decimal]:
    rows = con.execute(spread_sql(), [str(amount), exponent, [f"{w:f}" for w in weights]])
    return [part for (part,) in rows.fetchall()]


def reference(amount: Decimal, exponent: int, weights: list[Decimal]) -> list[Decimal]:
    """Day d's part: round_half_up(A * W_d / W) - round_half_up(A * W_(d-1) / W), at the
    minor unit, halves away from zero (Decimal's ROUND_HALF_UP)."""
    minor, whole = D(1).scaleb(-exponent), sum(weights)
    with localcontext() as ctx:
        ctx.prec = 120  # exact enough: a quotient this close to a half is one
        upto = [D(0)]
        for weight in weights:
            upto.append(upto[-1] + weight)
        rounded = [(amount * u / whole).quantize(minor, rounding=ROUND_HALF_UP) for u in upto]
    return [after - before for before, after in zip(rounded, rounded[1:], strict=False)]


@st.composite
def amounts(draw) -> tuple[Decimal, int]:
    exponent = draw(st.sampled_from([2, 0, 3]))
    minor = draw(st.integers(-(10**11), 10**11))
    return D(minor).scaleb(-exponent), exponent


def weight(low: int, high: int) -> st.SearchStrategy[Decimal]:
    """A quantity with 0 to 12 decimals (DECIMAL(38, 12), as daily quantities are)."""
    return st.builds(
        lambda units, places: D(units).scaleb(-places), st.integers(low, high), st.integers(0, 12)
    )


POSITIVE = st.lists(weight(1, 10**9), min_size=1, max_size=40)
MIXED = st.lists(weight(-(10**9), 10**9), min_size=1, max_size=40).filter(lambda ws: sum(ws) != 0)


def test_ten_dollars_over_thirty_days(duck):
    parts = spread(duck, D("10.00"), 2, [D(1)] * 30)
    assert parts[:4] == [D("0.33"), D("0.34"), D("0.33"), D("0.33")]
    assert sum(parts) == D("10.00")
    assert sorted(set(parts)) == [D("0.33"), D("0.34")]


@settings(max_examples=300, deadline=None, database=None)
@given(amount=amounts(), weights=st.one_of(POSITIVE, MIXED))
@example(amount=(D("10.00"), 2), weights=[D(1)] * 30)
@example(amount=(D("31.00"), 2), weights=[D(1)] * 30)
@example(amount=(D("-10.00"), 2), weights=[D(1)] * 3)
@example(amount=(D("1000"), 0), weights=[D(1)] * 7)  # JPY
@example(amount=(D("0.005"), 3), weights=[D("0.5"), D("0.5")])  # KWD: a half fils each
@example(amount=(D("0.01"), 2), weights=[D(3), D(-1)])  # mixed: 0.015 then -0.005
def test_cumulative_parts_sum_to_the_amount_and_round_half_up(duck, amount, weights):
    amount, exponent = amount
    parts = spread(duck, amount, exponent, weights)
    assert sum(parts) == amount
    assert parts == reference(amount, exponent, weights)


# --- 2. the ledger --------------------------------------------------------------------------

# CI runs a few ledgers, the same ones every time (each is three dbt builds); more, at random:
# METERBOOK_REVENUE_EXAMPLES=50 METERBOOK_REVENUE_RANDOM=1
EXAMPLES = int(os.environ.get("METERBOOK_REVENUE_EXAMPLES", "5"))
RANDOM = bool(os.environ.get("METERBOOK_REVENUE_RANDOM"))
MARTS = ("fct_revenue_schedule", "fct_revenue_rollforward", "fct_revenue_journal")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Warehouse:
    """A workspace with the base catalog and events, ingested (customers, meters, metered
    events) and the line_kinds seed loaded; the examples write the ledger themselves."""
    return base_warehouse(tmp_path_factory.mktemp("revenue_properties") / "home")


def snapshot(con) -> dict[str, list[tuple]]:
    return {m: con.execute(f"SELECT * FROM {relation(m)} ORDER BY ALL").fetchall() for m in MARTS}


def assert_checks_pass(con, months: list[str]) -> None:
    passed, meta = check_schedule_sums(con)
    assert passed, meta
    for month in months:
        for check in (check_balances, check_journal, check_deferred):
            passed, meta = check(con, month)
            assert passed, (check.__name__, month, meta)


def lifetime_revenue(ledger: Ledger) -> dict[str, Decimal]:
    """Per customer, everything ever recognized: every line but credit purchases, and what
    paid grants left to expire (breakage)."""
    out: dict[str, Decimal] = defaultdict(Decimal)
    for inv in ledger.invoices:
        for li in inv.lines:
            if li.kind != "credit_purchase":
                out[inv.customer.customer_id] += to_money(li.amount, inv.customer.exponent)
    for g in ledger.grants:
        out[g.customer.customer_id] += to_money(g.expired, g.customer.exponent)
    return out


def nonzero(values: dict) -> dict:
    return {k: v for k, v in values.items() if v}


def assert_schedules(con, ledger: Ledger) -> None:
    """(a) Each line's schedule sums to its amount (a credit purchase's: to what was drawn and
    what broke); and it is, row by row, the schedule computed here: usage on the local days of
    its events by quantity (evenly without any, or for a max meter), fees evenly over their
    days, true-ups and adjustments on their last day, discounts with the lines they reduce
    (and reported under their kind)."""
    schedule = relation("fct_revenue_schedule")
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for inv in ledger.invoices:
        for li in inv.lines:
            if li.kind != "credit_purchase":
                sums[(li.line_id, "revenue")] += to_money(li.amount, inv.customer.exponent)
    for g in ledger.grants:
        drawn = sum(amount for _, amount in g.draws)
        sums[(g.line.line_id, "drawn")] += to_money(drawn, g.customer.exponent)
        sums[(g.line.line_id, "breakage")] += to_money(g.expired, g.customer.exponent)
    actual = con.execute(
        f"SELECT line_id, row_type, sum(amount) FROM {schedule} WHERE NOT reversal GROUP BY ALL"
    ).fetchall()
    assert nonzero({(line_id, row_type): a for line_id, row_type, a in actual}) == nonzero(sums)

    expected = expected_schedule(ledger)
    rows = con.execute(
        f"SELECT line_id, reduces_line_id, revenue_kind, row_type, revenue_date, sum(amount)"
        f" FROM {schedule} WHERE NOT reversal GROUP BY ALL"
    ).fetchall()
    actual_rows = nonzero({tuple(key): amount for *key, amount in rows})
    missing = {k: v for k, v in expected.items() if actual_rows.get(k) != v}
    extra = {k: v for k, v in actual_rows.items() if k not in expected}
    assert not missing and not extra, {"expected, not found": missing, "not expected": extra}


def expected_rollforward(ledger: Ledger, months: list[date]) -> dict[tuple, tuple]:
    """Per (month, customer): recognized in the month, deferred and unbilled at its end."""
    out = {}
    for customer in ledger.customers():
        before = position(ledger, customer, months[0] - timedelta(days=1))
        for month in months:
            now = position(ledger, customer, add_months(month, 1) - timedelta(days=1))
            money = [
                to_money(v, customer.exponent)
                for v in (now.recognized - before.recognized, now.deferred, now.unbilled)
            ]
            out[(month_text(month), customer.customer_id)] = tuple(money)
            before = now
    return out


def assert_rollforward(con, ledger: Ledger, months: list[date]) -> None:
    """(b) The roll-forward's recognized, deferred and unbilled per customer and month are the
    ones computed from the generated rows; each month opens where the last one closed."""
    rows = con.execute(
        f"SELECT revenue_month, customer_id, recognized, deferred_closing, unbilled_closing,"
        f" deferred_opening, unbilled_opening FROM {relation('fct_revenue_rollforward')}"
    ).fetchall()
    actual = {(m, c): (r, d, u) for m, c, r, d, u, _, _ in rows}
    expected = expected_rollforward(ledger, months)
    assert set(actual) <= set(expected), "roll-forward months outside the ledger's range"
    zero = (D(0), D(0), D(0))
    mismatches = {
        key: {"expected": want, "actual": actual.get(key, zero)}
        for key, want in sorted(expected.items())
        if actual.get(key, zero) != want
    }
    assert not mismatches, mismatches
    for m, c, *_, d_open, u_open in rows:
        prior = month_text(add_months(date.fromisoformat(f"{m}-01"), -1))
        _, d_before, u_before = actual.get((prior, c), zero)
        assert (d_open, u_open) == (d_before, u_before), (m, c)


def assert_totals(con, ledger: Ledger, months: list[date]) -> None:
    """(b) Over all time, what was recognized is every line that is not a credit purchase plus
    breakage; at the last month end, deferred revenue is what paid grants that never expire
    still hold: none once every service day has passed and every grant is used or expired."""
    rf = relation("fct_revenue_rollforward")
    recognized = con.execute(f"SELECT customer_id, sum(recognized) FROM {rf} GROUP BY ALL")
    assert nonzero(dict(recognized.fetchall())) == nonzero(lifetime_revenue(ledger))
    left: dict[str, Decimal] = defaultdict(Decimal)
    for g in ledger.grants:
        unused = g.line.amount - sum(amount for _, amount in g.draws) - g.expired
        left[g.customer.customer_id] += to_money(unused, g.customer.exponent)
    deferred = con.execute(
        f"SELECT customer_id, deferred_closing FROM {rf} WHERE revenue_month = ?",
        [month_text(months[-1])],
    )
    deferred = nonzero(dict(deferred.fetchall()))
    assert deferred == nonzero(left)
    if service_over(ledger, add_months(months[-1], 1) - timedelta(days=1)):
        assert not deferred


def assert_journal(con, ledger: Ledger) -> None:
    """(c) Every journal day balances per currency, and the revenue accounts take in, over all
    time, everything recognized."""
    journal = relation("fct_revenue_journal")
    unbalanced = con.execute(
        f"SELECT entry_date, currency, sum(debit), sum(credit) FROM {journal}"
        " GROUP BY ALL HAVING sum(debit) <> sum(credit) ORDER BY ALL"
    ).fetchall()
    assert not unbalanced
    revenue = con.execute(
        f"SELECT currency, sum(credit - debit) FROM {journal}"
        " WHERE account_role IN ('revenue_usage', 'revenue_fees', 'breakage') GROUP BY ALL"
    )
    expected: dict[str, Decimal] = defaultdict(Decimal)
    for customer_id, amount in lifetime_revenue(ledger).items():
        expected[BY_ID[customer_id].currency] += amount
    assert nonzero(dict(revenue.fetchall())) == nonzero(expected)


def assert_deferred_never_negative(con) -> None:
    """(d) Day by day, no customer's deferred revenue is below zero."""
    negative = con.execute(
        f"""
        SELECT customer_id, currency, day, balance FROM (
            SELECT customer_id, currency, day,
                   sum(deferred_billed - deferred_recognized - breakage)
                       OVER (PARTITION BY customer_id, currency ORDER BY day) AS balance
            FROM {relation("int_revenue_movements")}
        ) WHERE balance < 0 ORDER BY ALL
        """
    ).fetchall()
    assert not negative, negative[:5]
    closing = relation("fct_revenue_rollforward")
    assert not con.execute(f"SELECT * FROM {closing} WHERE deferred_closing < 0").fetchall()


def assert_revenue_adds_up(warehouse: Warehouse, ledger: Ledger) -> None:
    months = month_range(ledger)
    with connect(warehouse.path) as con:
        write_ledger(con, ledger, warehouse.raw_read_seq)
    warehouse.build()
    with connect(warehouse.path, read_only=True) as con:
        built = snapshot(con)
        assert_checks_pass(con, [month_text(m) for m in months])
        assert_schedules(con, ledger)
        if months:
            assert_rollforward(con, ledger, months)
            assert_totals(con, ledger, months)
        assert_journal(con, ledger)
        assert_deferred_never_negative(con)

    # (e) building again changes nothing: everything at once, then one month on its own (the
    # revenue job's partition), which replaces that month's roll-forward and journal
    warehouse.build()
    with connect(warehouse.path, read_only=True) as con:
        assert snapshot(con) == built
    if months:
        warehouse.build(close_month=month_text(months[len(months) // 2]))
        with connect(warehouse.path, read_only=True) as con:
            assert snapshot(con) == built


@pytest.mark.slow
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=not RANDOM,  # the same ledgers on every CI run
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ledger=ledgers())
def test_revenue_of_any_ledger_adds_up(warehouse, ledger):
    assert_revenue_adds_up(warehouse, ledger)


@pytest.mark.slow
def test_a_month_with_a_billing_and_no_schedule_row_is_rolled_forward(warehouse):
    """Prepaid credits bought on the last invoice, neither drawn nor expiring, are its only
    line: November (the month it is billed in) must still be in the roll-forward and journal
    of a build of every month, with its 500.00 of deferred revenue, as a build of November
    alone has it."""
    assert_revenue_adds_up(warehouse, credits_bought_last())


@pytest.mark.slow
def test_credits_expiring_before_their_sale_is_billed_are_breakage_out_of_unbilled(warehouse):
    """The paid credits' breakage is on their expiry date (SPEC 8) though the invoice that sells
    them is dated later: it is recognized before it is billed, like a line's revenue, so
    deferred revenue never goes below zero (the revenue command refused every customer's month)."""
    assert_revenue_adds_up(warehouse, credits_expired_before_billed())
    with connect(warehouse.path, read_only=True) as con:
        october = con.execute(
            f"SELECT recognized, deferred_closing, unbilled_closing FROM"
            f" {relation('fct_revenue_rollforward')} WHERE revenue_month = '2026-10'"
        ).fetchall()
    assert october == [(D("100.00"), D(0), D("100.00"))]  # usage 20.00 + breakage 80.00
