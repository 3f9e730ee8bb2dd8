"""A random but valid ledger for the revenue-recognition properties (SPEC 7, 8), the rows it
writes into meterbook_ledger, and what recognition must make of it, computed here from the
generated rows alone (tests/revenue/test_revenue_properties.py).

The ledger: two or three customers (USD, JPY and KWD, in four time zones), each with two or
three finalized invoices of consecutive periods (calendar months, anniversary months from the
15th, or quarters), with usage lines (count and sum meters, spread by the base workspace's
events; a max meter, spread evenly), fixed fees in arrears and in advance (the next period, or
a quarter, from the invoice's period_end), minimum true-ups, discounts of usage / fixed fees /
all (never more than the lines they reduce), adjustments, and credit purchases whose paid
grants are drawn by the same or later invoices (never more than bought, nor more than an
invoice's total less its purchases) and expire on their expiry date (or never).

The oracle works in minor units (integers), two ways:
- the schedule row by row (expected_schedule): each usage line by the local days of the base
  events (the same file ingest read), each fee evenly, each discount over its lines' days;
- each customer's position at a month end (position): billed, recognized, deferred and
  unbilled, from each line's recognized-to-date; that has a closed form for all but usage: a
  line spread evenly over N days has recognized round(A * d / N) after d of them (cumulative
  rounding telescopes), and a discount's part p of a line of amount a has recognized
  round(p * r / a) once the line has recognized r.

Credit notes (SPEC 11; tests/revenue/test_revenue_credit_notes.py) are written beside a ledger
(write_credit_notes), and what they must reverse is computed from the expected schedule
(expected_credit_rows): the notes up to k on a line of amount A take round(C_k * S_d / A) -
round(C_k * S_(d-1) / A) of its day d, note k the difference from the notes before it.
The base workspace (catalog and events ingested, line_kinds seeded) is base_warehouse().
"""

from __future__ import annotations

import functools
import json
import os
import random
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from orchestration.defs.dbt.runner import run_dbt
from orchestration.sql import connect
from orchestration.warehouse.models import relation


@dataclass(frozen=True)
class Customer:
    customer_id: str
    currency: str
    exponent: int
    timezone: str


CUSTOMERS = (
    Customer("c_utc", "USD", 2, "UTC"),
    Customer("c_la", "USD", 2, "America/Los_Angeles"),
    Customer("c_tokyo", "JPY", 0, "Asia/Tokyo"),
    Customer("c_kw", "KWD", 3, "Asia/Kuwait"),
)
BY_ID = {c.customer_id: c for c in CUSTOMERS}
# the first month a customer's first period can start in (or the second, or the third)
FIRST_MONTH = date(2026, 8, 1)

# --- the base workspace ---------------------------------------------------------------------

CATALOG = """
settings: {invoice_prefix: RV, grace_days: 3, default_currency: USD}
meters:
  - {code: api_calls, name: API calls, event_name: api.request, aggregation: count}
  - {code: tokens, name: Tokens, event_name: llm.completion, aggregation: sum, expression: tokens}
  - {code: seats, name: Seats, event_name: seats.set, aggregation: max, expression: seats}
plans:
  - code: usd
    currency: USD
    versions:
      - {version: 1, effective_from: 2026-01-01, charges: [{meter: api_calls, model: per_unit, unit_price: "0.10"}]}
  - code: jpy
    currency: JPY
    versions:
      - {version: 1, effective_from: 2026-01-01, charges: [{meter: api_calls, model: per_unit, unit_price: "3"}]}
  - code: kwd
    currency: KWD
    versions:
      - {version: 1, effective_from: 2026-01-01, charges: [{meter: api_calls, model: per_unit, unit_price: "0.030"}]}
customers:
  - {id: c_utc, currency: USD, timezone: UTC, tax_rate: "0"}
  - {id: c_la, currency: USD, timezone: America/Los_Angeles, tax_rate: "0"}
  - {id: c_tokyo, currency: JPY, timezone: Asia/Tokyo, tax_rate: "0"}
  - {id: c_kw, currency: KWD, timezone: Asia/Kuwait, tax_rate: "0"}
subscriptions:
  - {id: sub_c_utc, customer_id: c_utc, plan: usd, start_date: 2026-01-01}
  - {id: sub_c_la, customer_id: c_la, plan: usd, start_date: 2026-01-01}
  - {id: sub_c_tokyo, customer_id: c_tokyo, plan: jpy, start_date: 2026-01-01}
  - {id: sub_c_kw, customer_id: c_kw, plan: kwd, start_date: 2026-01-01}
"""

EVENT_METERS = (
    ("api_calls", "api.request", None),
    ("tokens", "llm.completion", "tokens"),
    ("seats", "seats.set", "seats"),
)


def landing_events() -> str:
    """The base workspace's usage: each customer's events on random days and hours (UTC) from
    late July 2026 to early January 2027, so the local day of an event near midnight depends
    on the customer's time zone. c_kw sends no api calls: its count meter is spread evenly."""
    rng = random.Random(20261001)
    lines = []
    for customer in CUSTOMERS:
        for meter, name, prop in EVENT_METERS:
            if (customer.customer_id, meter) == ("c_kw", "api_calls"):
                continue
            for n in range(60):
                day = date(2026, 7, 25) + timedelta(days=rng.randrange(170))
                at = datetime(day.year, day.month, day.day, rng.randrange(24), rng.randrange(60))
                lines.append(
                    json.dumps(
                        {
                            "event_id": f"{customer.customer_id}-{meter}-{n}",
                            "customer_id": customer.customer_id,
                            "event_name": name,
                            "timestamp": at.strftime("%Y-%m-%dT%H:%M:00Z"),
                            "properties": {prop: rng.randrange(1, 5000)} if prop else {},
                        }
                    )
                )
    return "\n".join(lines) + "\n"


# --- the ledger -----------------------------------------------------------------------------


def add_months(day: date, months: int) -> date:
    """The same day of the month `months` later (days up to the 28th only)."""
    assert day.day <= 28, day
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, day.day)


def month_of(day: date) -> date:
    return date(day.year, day.month, 1)


def month_text(first_day: date) -> str:
    return f"{first_day:%Y-%m}"


def to_money(minor: int, exponent: int) -> Decimal:
    return Decimal(minor).scaleb(-exponent)


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to an integer, halves away from zero (exact)."""
    sign = -1 if (numerator < 0) != (denominator < 0) else 1
    return sign * ((2 * abs(numerator) + abs(denominator)) // (2 * abs(denominator)))


def cumulative_split(amount: int, weights: list[int]) -> list[int]:
    """Part k of `amount` by `weights`: round(A * W_k / W) - round(A * W_(k-1) / W)."""
    whole, upto, parts = sum(weights), 0, []
    for weight in weights:
        before, upto = upto, upto + weight
        parts.append(round_half_up(amount * upto, whole) - round_half_up(amount * before, whole))
    return parts


# kinds by charge group (seed line_kinds): what a discount of `applies_to` reduces
DISCOUNTED = {"usage": {"usage", "minimum_true_up"}, "fixed_fees": {"fixed_fee"}}
DISCOUNTED["all"] = DISCOUNTED["usage"] | DISCOUNTED["fixed_fees"]
SORT_RANK = {
    "usage": 1,
    "minimum_true_up": 2,
    "fixed_fee": 6,
    "adjustment": 8,
    "discount": 9,
    "credit_purchase": 11,
}


@dataclass(frozen=True)
class Line:
    line_id: str
    position: int
    kind: str
    amount: int  # minor units
    period_start: date
    period_end: date
    description: str
    meter: str | None = None
    fee_code: str | None = None
    applies_to: str | None = None  # discounts


@dataclass(frozen=True)
class Invoice:
    invoice_id: str
    customer: Customer
    period_start: date
    period_end: date  # the day it is dated and billed
    lines: tuple[Line, ...]
    tax: int  # minor units

    @property
    def close_month(self) -> str:
        """The close that bills it: the month of its last day (SPEC 3.3)."""
        return month_text(month_of(self.period_end - timedelta(days=1)))

    @property
    def subtotal(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def total(self) -> int:
        return self.subtotal + self.tax

    def purchases(self) -> int:
        return sum(line.amount for line in self.lines if line.kind == "credit_purchase")


@dataclass(frozen=True)
class Grant:
    """A paid grant bought by a credit_purchase line, drawn by invoices and left to expire."""

    grant_id: str
    customer: Customer
    invoice: Invoice  # the purchase's
    line: Line
    granted_on: date
    expires_on: date | None
    # (the drawing invoice, minor units): dated the invoice's period_end
    draws: tuple[tuple[Invoice, int], ...]
    expired: int  # what is left on expires_on (minor units), breakage

    def drawn_by(self, day: date) -> int:
        return sum(amount for invoice, amount in self.draws if invoice.period_end <= day)

    def broken_by(self, day: date) -> int:
        return self.expired if self.expires_on is not None and self.expires_on <= day else 0


@dataclass(frozen=True, repr=False)
class Ledger:
    invoices: tuple[Invoice, ...]
    grants: tuple[Grant, ...]

    def __repr__(self) -> str:
        return "Ledger:\n" + self.describe()

    def _repr_pretty_(self, printer, cycle) -> None:  # how Hypothesis shows a failing example
        printer.text(repr(self))

    def customers(self) -> list[Customer]:
        return sorted({i.customer for i in self.invoices}, key=lambda c: c.customer_id)

    def describe(self) -> str:
        """One line per invoice line and grant: what a failing example prints."""
        out = []
        for inv in self.invoices:
            out.append(f"{inv.invoice_id} {inv.period_start}..{inv.period_end} tax={inv.tax}")
            out += [
                f"  {li.position} {li.kind} {li.amount} {li.period_start}..{li.period_end}"
                f" {li.meter or li.fee_code or ''} {li.description}"
                for li in inv.lines
            ]
        for g in self.grants:
            draws = [(i.period_end.isoformat(), a) for i, a in g.draws]
            out.append(
                f"{g.grant_id} bought {g.line.amount} on {g.granted_on}, expires {g.expires_on},"
                f" draws {draws}, expired {g.expired}"
            )
        return "\n".join(out)


class Spec(NamedTuple):
    """A line before its invoice numbers it."""

    kind: str
    amount: int
    period_start: date
    period_end: date
    description: str
    meter: str | None = None
    fee_code: str | None = None
    applies_to: str | None = None


def minor_amounts(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@st.composite
def _usage_lines(draw, start: date, end: date) -> list[Spec]:
    specs = []
    offset = draw(st.sampled_from([0, 0, 11]))  # a subscription that started mid-month
    meters = st.lists(st.sampled_from(["tokens", "api_calls", "seats"]), min_size=1, unique=True)
    for meter in draw(meters):
        amount = draw(st.one_of(minor_amounts(1, 10**6), st.just(0)))
        specs.append(Spec("usage", amount, start + timedelta(offset), end, meter, meter=meter))
    if draw(st.booleans()):
        specs.append(Spec("minimum_true_up", draw(minor_amounts(1, 10**5)), start, end, "Minimum"))
    return specs


@st.composite
def _fee_lines(draw, start: date, end: date, months: int) -> list[Spec]:
    specs = []
    timings = draw(st.lists(st.sampled_from(["advance", "arrears", "quarter"]), max_size=2))
    for n, timing in enumerate(timings):
        amount = draw(minor_amounts(1, 10**6))
        if timing == "arrears":
            period = (start + timedelta(draw(st.sampled_from([0, 17]))), end)
        else:  # in advance: the next period, or a quarter from the invoice's period_end
            period = (end, add_months(end, months if timing == "advance" else 3))
        specs.append(Spec("fixed_fee", amount, *period, f"Fee {timing}", fee_code=f"fee{n}"))
    return specs


def _discount(draw, specs: list[Spec], start: date, end: date) -> list[Spec]:
    """A percentage of the lines it applies to, as the product describes it: never more."""
    applies_to = draw(st.sampled_from(["usage", "fixed_fees", "all"]))
    base = sum(s.amount for s in specs if s.kind in DISCOUNTED[applies_to])
    percent = draw(st.integers(1, 100))
    amount = -round_half_up(base * percent, 100)
    if base <= 0 or amount == 0:
        return []
    text = f"Discount d{percent} ({percent}% of {applies_to})"
    return [
        Spec("discount", amount, start, end, text, fee_code=f"d{percent}", applies_to=applies_to)
    ]


@st.composite
def invoices(draw, customer: Customer, start: date, months: int, tax_percent: int) -> Invoice:
    """One period's invoice: `months` long from `start` (a calendar month, an anniversary
    month from the 15th, or a quarter)."""
    end = add_months(start, months)
    inv_id = f"inv_{customer.customer_id}_{start:%Y%m%d}"
    specs = draw(_usage_lines(start, end)) + draw(_fee_lines(start, end, months))
    if draw(st.booleans()):
        specs += _discount(draw, specs, start, end)
    if draw(st.booleans()):
        usage = sum(s.amount for s in specs if s.kind == "usage")
        amount = draw(minor_amounts(-usage, 10**5).filter(lambda a: a != 0))
        # it corrects the period before; recognized on the last day of this invoice's period
        corrected = (add_months(start, -months), start)
        specs.append(Spec("adjustment", amount, *corrected, "Adjustment (re-rated)"))
    if draw(st.booleans()):
        grant_id = f"g_{customer.customer_id}_{start:%Y%m}"
        amount = draw(minor_amounts(1, 10**6))
        text = f"Prepaid credits bought ({grant_id})"
        specs.append(Spec("credit_purchase", amount, start, end, text, fee_code=grant_id))
    specs.sort(key=lambda s: SORT_RANK[s.kind])
    lines = tuple(Line(f"li_{inv_id}_{n}", n, *spec) for n, spec in enumerate(specs))
    taxable = sum(li.amount for li in lines if li.kind != "credit_purchase")
    tax = round_half_up(max(taxable, 0) * tax_percent, 100)
    return Invoice(inv_id, customer, start, end, lines, tax)


@st.composite
def _grant(draw, purchase: Invoice, line: Line, later: list[Invoice], drawn: dict) -> Grant:
    days = (purchase.period_end - purchase.period_start).days
    granted_on = purchase.period_start + timedelta(draw(st.integers(0, days - 1)))
    # expiring after it is billed, or (a pack valid for days of the period that sells it)
    # before; one in three never expires, and may be left with a balance: deferred revenue
    expires = draw(st.sampled_from([True, True, False]))
    after_granted = (purchase.period_end - granted_on).days + draw(st.integers(-days + 1, 150))
    expires_on = granted_on + timedelta(max(1, after_granted)) if expires else None
    balance, draws = line.amount, []
    for inv in later:
        valid = inv.period_end > granted_on and (
            expires_on is None or inv.period_start < expires_on
        )
        room = min(balance, inv.total - inv.purchases() - drawn.get(inv.invoice_id, 0))
        if not valid or room <= 0:
            continue
        amount = draw(st.one_of(st.just(room), st.integers(0, room)))  # often all it can
        if amount:
            draws.append((inv, amount))
            drawn[inv.invoice_id] = drawn.get(inv.invoice_id, 0) + amount
            balance -= amount
    expired = balance if expires_on is not None else 0
    return Grant(
        line.fee_code,
        purchase.customer,
        purchase,
        line,
        granted_on,
        expires_on,
        tuple(draws),
        expired,
    )


@st.composite
def ledgers(draw) -> Ledger:
    customers = draw(st.lists(st.sampled_from(CUSTOMERS), min_size=2, max_size=3, unique=True))
    all_invoices, grants = [], []
    for customer in customers:
        anchor = draw(st.sampled_from([1, 15]))  # calendar or anniversary periods
        months = draw(st.sampled_from([1, 1, 3]))  # monthly or quarterly
        first = add_months(FIRST_MONTH.replace(day=anchor), draw(st.integers(0, 2)))
        tax_percent = draw(st.sampled_from([0, 10, 20]))
        mine = [
            draw(invoices(customer, add_months(first, k * months), months, tax_percent))
            for k in range(draw(st.integers(2, 3)))
        ]
        drawn: dict[str, int] = {}
        for n, inv in enumerate(mine):
            for line in inv.lines:
                if line.kind == "credit_purchase":
                    grants.append(draw(_grant(inv, line, mine[n:], drawn)))
        all_invoices += mine
    return Ledger(tuple(all_invoices), tuple(grants))


def credits_bought_last() -> Ledger:
    """September's usage (billed October 1), then an October with no usage but prepaid credits
    bought (billed November 1), not drawn yet and never expiring: November opens with 500.00
    of deferred revenue, and nothing is recognized in it."""
    c = BY_ID["c_utc"]
    september = Invoice(
        "inv_c_utc_20260901", c, date(2026, 9, 1), date(2026, 10, 1),
        (Line("li_sep_0", 0, "usage", 10000, date(2026, 9, 1), date(2026, 10, 1), "seats", "seats"),),
        0,
    )  # fmt: skip
    bought = Line(
        "li_oct_1", 1, "credit_purchase", 50000, date(2026, 10, 1), date(2026, 11, 1),
        "Prepaid credits bought (g_c_utc_202610)", fee_code="g_c_utc_202610",
    )  # fmt: skip
    october = Invoice(
        "inv_c_utc_20261001", c, date(2026, 10, 1), date(2026, 11, 1),
        (Line("li_oct_0", 0, "usage", 0, date(2026, 10, 1), date(2026, 11, 1), "seats", "seats"), bought),
        0,
    )  # fmt: skip
    grant = Grant("g_c_utc_202610", c, october, bought, date(2026, 10, 5), None, (), 0)
    return Ledger((september, october), (grant,))


def credits_expired_before_billed() -> Ledger:
    """A pack of 100.00 valid October 5-20, sold on the October invoice (dated November 1),
    which it pays 20.00 of: 80.00 expires on October 20, before the sale is billed."""
    c = BY_ID["c_utc"]
    bought = Line(
        "li_oct_1", 1, "credit_purchase", 10000, date(2026, 10, 1), date(2026, 11, 1),
        "Prepaid credits bought (g_c_utc_pack)", fee_code="g_c_utc_pack",
    )  # fmt: skip
    october = Invoice(
        "inv_c_utc_20261001", c, date(2026, 10, 1), date(2026, 11, 1),
        (Line("li_oct_0", 0, "usage", 2000, date(2026, 10, 1), date(2026, 11, 1), "seats", "seats"), bought),
        0,
    )  # fmt: skip
    grant = Grant(
        "g_c_utc_pack", c, october, bought, date(2026, 10, 5), date(2026, 10, 20),
        ((october, 2000),), 8000,
    )  # fmt: skip
    return Ledger((october,), (grant,))


# --- the rows -------------------------------------------------------------------------------

LEDGER_TABLES = (
    "invoices",
    "invoice_lines",
    "invoice_status_changes",
    "invoice_numbers",
    "period_finalizations",
    "wallet_entries",
    "credit_notes",
    "credit_note_lines",
    "credit_note_numbers",
)


def finalized_at(close_month: str) -> datetime:
    first = date.fromisoformat(f"{close_month}-01")
    end = add_months(first, 1) + timedelta(days=1)
    return datetime(end.year, end.month, end.day, tzinfo=UTC)


def write_ledger(con, ledger: Ledger, raw_read_seq: int) -> None:
    """Replace the ledger tables' rows with `ledger`'s, as finalization would have left them."""
    for table in LEDGER_TABLES:
        con.execute(f"DELETE FROM meterbook_ledger.{table}")
    months = sorted({inv.close_month for inv in ledger.invoices})
    con.executemany(
        "INSERT INTO meterbook_ledger.invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [_invoice_row(inv, n, ledger) for n, inv in enumerate(ledger.invoices, 1)],
    )
    con.executemany(
        "INSERT INTO meterbook_ledger.invoice_lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                inv.invoice_id, li.line_id, li.position, li.kind, li.meter, li.fee_code, None,
                li.description, li.period_start, li.period_end, None, None, None,
                to_money(li.amount, inv.customer.exponent),
            )
            for inv in ledger.invoices
            for li in inv.lines
        ],
    )  # fmt: skip
    con.executemany(
        "INSERT INTO meterbook_ledger.invoice_status_changes VALUES (?, 'finalized', ?, NULL)",
        [(inv.invoice_id, finalized_at(inv.close_month)) for inv in ledger.invoices],
    )
    con.executemany(
        "INSERT INTO meterbook_ledger.period_finalizations VALUES (?, ?, ?, ?)",
        [
            (m, finalized_at(m), sum(i.close_month == m for i in ledger.invoices), raw_read_seq)
            for m in months
        ],
    )
    for row in _wallet_rows(ledger):
        con.execute(
            "INSERT INTO meterbook_ledger.wallet_entries VALUES"
            " (?, ?, ?, ?, ?, ?, 'paid', ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
            row,
        )


def _invoice_row(inv: Invoice, n: int, ledger: Ledger) -> tuple:
    exp = inv.customer.exponent
    paid = sum(a for g in ledger.grants for i, a in g.draws if i.invoice_id == inv.invoice_id)
    discounts = -sum(li.amount for li in inv.lines if li.kind == "discount")
    money = [to_money(v, exp) for v in (inv.subtotal, discounts, inv.tax, inv.total, paid)]
    return (
        inv.invoice_id, f"RV-{inv.period_start.year}-{n:06d}", inv.close_month,
        inv.customer.customer_id, f"sub_{inv.customer.customer_id}", inv.customer.currency, exp,
        inv.period_start, inv.period_end, *money, to_money(inv.total - paid, exp),
        finalized_at(inv.close_month), "{}",
    )  # fmt: skip


def _wallet_rows(ledger: Ledger) -> Iterator[tuple]:
    seq = 0
    for g in ledger.grants:
        exp, cid, cur = g.customer.exponent, g.customer.customer_id, g.customer.currency
        bought = to_money(g.line.amount, exp)
        month = g.invoice.close_month
        seq += 1
        yield (
            month, seq, f"we_{g.grant_id}_grant", "grant", cid, g.grant_id, bought, g.granted_on,
            cur, g.invoice.invoice_id, g.line.line_id, "catalog", None, g.granted_on,
            g.expires_on, 10, "all", bought, finalized_at(month),
        )  # fmt: skip
        for n, (inv, amount) in enumerate(g.draws):
            seq += 1
            yield (
                inv.close_month, seq, f"we_{g.grant_id}_draw{n}", "draw", cid, g.grant_id,
                to_money(-amount, exp), inv.period_end, cur, inv.invoice_id, None, None, None,
                None, None, None, None, None, finalized_at(inv.close_month),
            )  # fmt: skip
        if g.expired:
            seq += 1
            month = month_text(month_of(g.expires_on - timedelta(days=1)))
            yield (
                month, seq, f"we_{g.grant_id}_expire", "expire", cid, g.grant_id,
                to_money(-g.expired, exp), g.expires_on, cur, None, None, None, None, None,
                None, None, None, None, finalized_at(month),
            )  # fmt: skip


# --- the oracle -----------------------------------------------------------------------------


@functools.cache
def daily_usage() -> dict[tuple[str, str], dict[date, int]]:
    """The base events' quantity per customer, additive meter and local day: api calls
    counted, tokens summed (seats is a max meter: not additive)."""
    names = {name: (meter, prop) for meter, name, prop in EVENT_METERS if meter != "seats"}
    out: dict[tuple[str, str], dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for text in landing_events().splitlines():
        event = json.loads(text)
        if event["event_name"] not in names:
            continue
        meter, prop = names[event["event_name"]]
        customer = BY_ID[event["customer_id"]]
        at = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
        day = at.astimezone(ZoneInfo(customer.timezone)).date()
        out[(customer.customer_id, meter)][day] += event["properties"][prop] if prop else 1
    return out


def _spread(amount: int, weights: dict[date, int]) -> dict[date, int]:
    """`amount` over the days by weight, cumulative rounding in date order; nonzero days only."""
    days = sorted(weights)
    parts = cumulative_split(amount, [weights[d] for d in days])
    return {d: part for d, part in zip(days, parts, strict=True) if part}


def _every_day(start: date, end: date) -> dict[date, int]:
    return {start + timedelta(n): 1 for n in range((end - start).days)}


def line_days(inv: Invoice, line: Line) -> dict[date, int]:
    """What a line that is not a discount or a purchase recognizes per day (minor units)."""
    last_day = inv.period_end - timedelta(days=1)
    if line.kind == "usage":
        used = daily_usage().get((inv.customer.customer_id, line.meter), {})
        weights = {d: q for d, q in used.items() if line.period_start <= d < line.period_end and q}
        return _spread(line.amount, weights or _every_day(line.period_start, line.period_end))
    if line.kind == "fixed_fee":
        return _spread(line.amount, _every_day(line.period_start, line.period_end))
    if line.kind == "minimum_true_up":
        return _spread(line.amount, {line.period_end - timedelta(days=1): 1})
    assert line.kind == "adjustment", line.kind
    return _spread(line.amount, {last_day: 1})


def discount_days(inv: Invoice, discount: Line) -> dict[tuple[str | None, date], int]:
    """A discount's parts, (the line it reduces, day) -> minor units: split over its lines by
    their amounts (line order), each part over its line's days by what the line recognizes."""
    reduced = targets(inv, discount)
    if not reduced:
        return {(None, inv.period_end - timedelta(days=1)): discount.amount}
    out = {}
    for part, line in zip(
        cumulative_split(discount.amount, [t.amount for t in reduced]), reduced, strict=True
    ):
        for day, amount in _spread(part, line_days(inv, line)).items():
            out[(line.line_id, day)] = amount
    return out


def expected_schedule(ledger: Ledger) -> dict[tuple, Decimal]:
    """Every row the schedule must hold, summed by (line, line reduced, revenue kind, row
    type, day): the amount."""
    out: dict[tuple, Decimal] = {}
    kinds = {li.line_id: li.kind for inv in ledger.invoices for li in inv.lines}
    for inv in ledger.invoices:
        exp = inv.customer.exponent
        for line in inv.lines:
            if line.kind == "discount":
                for (reduces, day), amount in discount_days(inv, line).items():
                    key = (line.line_id, reduces, kinds.get(reduces, "discount"), "revenue", day)
                    out[key] = to_money(amount, exp)
            elif line.kind != "credit_purchase":
                for day, amount in line_days(inv, line).items():
                    out[(line.line_id, None, line.kind, "revenue", day)] = to_money(amount, exp)
    for g in ledger.grants:
        exp, line_id = g.customer.exponent, g.line.line_id
        for inv, amount in g.draws:
            out[(line_id, None, "credit_purchase", "drawn", inv.period_end)] = to_money(amount, exp)
        if g.expired:
            out[(line_id, None, "breakage", "breakage", g.expires_on)] = to_money(g.expired, exp)
    return out


def targets(inv: Invoice, discount: Line) -> list[Line]:
    """The lines a discount reduces, in line order."""
    kinds = DISCOUNTED[discount.applies_to]
    return [li for li in inv.lines if li.kind in kinds and li.amount != 0]


def recognized(inv: Invoice, line: Line, day: date) -> int:
    """What `line` has recognized by the end of `day` (minor units); credit purchases are
    never revenue themselves."""
    last_day = inv.period_end - timedelta(days=1)
    if line.kind == "usage":  # by the days of its events: no closed form
        return sum(amount for d, amount in line_days(inv, line).items() if d <= day)
    if line.kind == "minimum_true_up":
        return line.amount if day >= line.period_end - timedelta(days=1) else 0
    if line.kind == "fixed_fee":
        days = (line.period_end - line.period_start).days
        passed = min(max((day - line.period_start).days + 1, 0), days)
        return round_half_up(line.amount * passed, days)
    if line.kind == "adjustment":
        return line.amount if day >= last_day else 0
    if line.kind == "discount":
        reduced = targets(inv, line)
        if sum(t.amount for t in reduced) == 0:
            return line.amount if day >= last_day else 0
        parts = cumulative_split(line.amount, [t.amount for t in reduced])
        return sum(
            round_half_up(part * recognized(inv, t, day), t.amount)
            for part, t in zip(parts, reduced, strict=True)
        )
    assert line.kind == "credit_purchase", line.kind
    return 0


@dataclass(frozen=True)
class Position:
    """One customer's totals at the end of a day (minor units)."""

    recognized: int  # revenue and breakage, to date
    deferred: int
    unbilled: int


def position(ledger: Ledger, customer: Customer, day: date) -> Position:
    """A billed line is deferred for what it has not recognized yet; one not billed yet is
    unbilled for what it has; bought credits are deferred until drawn or expired."""
    revenue = deferred = unbilled = 0
    for inv in ledger.invoices:
        if inv.customer != customer:
            continue
        is_billed = inv.period_end <= day
        for line in inv.lines:
            if line.kind == "credit_purchase":
                continue
            r = recognized(inv, line, day)
            revenue += r
            if is_billed:
                deferred += line.amount - r
            else:
                unbilled += r
    for g in ledger.grants:
        if g.customer != customer:
            continue
        revenue += g.broken_by(day)
        if g.invoice.period_end <= day:
            deferred += g.line.amount - g.drawn_by(day) - g.broken_by(day)
        else:  # expired before the invoice selling it is dated: recognized, not billed yet
            unbilled += g.broken_by(day)
    return Position(revenue, deferred, unbilled)


def month_range(ledger: Ledger) -> list[date]:
    """The first days of the months from the first billed or recognized day to the last."""
    days = [day for *_, day in expected_schedule(ledger)]
    days += [inv.period_end for inv in ledger.invoices for li in inv.lines if li.amount]
    months, month = [], month_of(min(days, default=date.max))
    while month <= max(days, default=date.min):
        months.append(month)
        month = add_months(month, 1)
    return months


def service_over(ledger: Ledger, day: date) -> bool:
    """Every service day has passed by `day`, and every paid grant is drawn or expired."""
    lines_done = all(
        recognized(inv, li, day) == li.amount
        for inv in ledger.invoices
        for li in inv.lines
        if li.kind != "credit_purchase"
    )
    grants_done = all(g.drawn_by(day) + g.broken_by(day) == g.line.amount for g in ledger.grants)
    return lines_done and grants_done


# --- credit notes (SPEC 11) -----------------------------------------------------------------


@dataclass(frozen=True)
class CreditNote:
    """A credit note as `meterbook credit-note` keeps it in the ledger: the lines it credits
    and how much of each (minor units, before tax). Notes are issued in the order given."""

    credit_note_id: str
    invoice: Invoice
    issued_on: date
    lines: tuple[tuple[Line, int], ...]
    tax: int = 0  # minor units
    settlement: str = "reduce_due"

    @property
    def subtotal(self) -> int:
        return sum(amount for _, amount in self.lines)


def write_credit_notes(con, notes: Sequence[CreditNote]) -> None:
    """Add `notes` to the ledger (after write_ledger), numbered CN-YYYY-NNNNNN in the order
    given, each issued at noon UTC of its day plus its position in seconds."""
    seq: dict[int, int] = defaultdict(int)
    for n, note in enumerate(notes):
        inv, exp = note.invoice, note.invoice.customer.exponent
        year = note.issued_on.year
        seq[year] += 1
        number = f"CN-{year}-{seq[year]:06d}"
        noon = datetime(year, note.issued_on.month, note.issued_on.day, 12, tzinfo=UTC)
        (invoice_number,) = con.execute(
            "SELECT number FROM meterbook_ledger.invoices WHERE invoice_id = ?", [inv.invoice_id]
        ).fetchone()
        money = [to_money(v, exp) for v in (note.subtotal, note.tax, note.subtotal + note.tax)]
        con.execute(
            "INSERT INTO meterbook_ledger.credit_notes VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                note.credit_note_id, number, inv.invoice_id, invoice_number,
                inv.customer.customer_id, f"sub_{inv.customer.customer_id}",
                inv.customer.currency, exp, note.issued_on, noon + timedelta(seconds=n),
                "test", note.settlement, *money, "{}", "<html></html>",
            ],
        )  # fmt: skip
        shares = cumulative_split(note.tax, [max(a, 0) for _, a in note.lines])
        if not any(a > 0 for _, a in note.lines):
            shares = [0] * len(note.lines)
        con.executemany(
            "INSERT INTO meterbook_ledger.credit_note_lines VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (note.credit_note_id, line.line_id, position, line.kind, line.description,
                 to_money(amount, exp), to_money(share, exp))
                for position, ((line, amount), share) in enumerate(
                    zip(note.lines, shares, strict=True), 1
                )
            ],
        )  # fmt: skip
        con.execute(
            "INSERT INTO meterbook_ledger.credit_note_numbers VALUES (?, ?, ?, ?)",
            [year, seq[year], number, note.credit_note_id],
        )


def line_schedule(inv: Invoice, line: Line) -> list[tuple[date, str | None, int]]:
    """A line's own schedule rows (day, line reduced, minor units), in the order a credit note
    spreads over them: by day, then by the line reduced."""
    if line.kind == "credit_purchase":
        return []
    if line.kind == "discount":
        rows = [(day, reduces, a) for (reduces, day), a in discount_days(inv, line).items()]
    else:
        rows = [(day, None, a) for day, a in line_days(inv, line).items()]
    return sorted(rows, key=lambda r: (r[0], r[1] or ""))


def expected_credit_rows(notes: Sequence[CreditNote]) -> dict[tuple, Decimal]:
    """What the notes must reverse, (credit note, line, line reduced, revenue kind, day) ->
    amount: the notes up to k on a line take round(C_k * S_d / A) - round(C_k * S_(d-1) / A)
    of its day d (A the line's schedule in all, S_d up to day d, C_k what notes 1..k
    credited), note k the difference from the notes before it; a day up to the note's date is
    reversed on that date, a later day on itself."""
    out: dict[tuple, int] = defaultdict(int)
    exponents: dict[str, int] = {}
    credited: dict[str, int] = defaultdict(int)
    for note in notes:
        inv = note.invoice
        exponents[note.credit_note_id] = inv.customer.exponent
        kinds = {li.line_id: li.kind for li in inv.lines}
        for line, amount in note.lines:
            before = credited[line.line_id]
            after = credited[line.line_id] = before + amount
            rows = line_schedule(inv, line)
            whole = sum(a for *_, a in rows)
            if whole == 0:
                continue
            upto = 0
            for day, reduces, weight in rows:
                prior, upto = upto, upto + weight
                # what the credits up to this note take of the day, less those before it
                share = (
                    round_half_up(after * upto, whole) - round_half_up(after * prior, whole)
                ) - (round_half_up(before * upto, whole) - round_half_up(before * prior, whole))
                kind = kinds[reduces] if reduces else line.kind
                when = max(day, note.issued_on)
                out[(note.credit_note_id, line.line_id, reduces, kind, when)] -= share
    return {k: to_money(v, exponents[k[0]]) for k, v in out.items() if v}


# --- the base workspace, ingested -----------------------------------------------------------

WAREHOUSE_NOW = "2027-02-01T00:00:00Z"  # after the base workspace's last event


@dataclass(frozen=True)
class Warehouse:
    path: Path
    target: Path  # one dbt target folder: later builds parse only what changed
    raw_read_seq: int

    def dbt(self, *args: str, close_month: str | None = None) -> None:
        """dbt in this process (as the product's reports run it), for every month when
        `close_month` is None."""
        partition = {"close_month": close_month} if close_month else None
        run_dbt(self.path, [*args, "--quiet"], partition, target_path=self.target)

    def build(self, close_month: str | None = None) -> None:
        """The revenue models: `dbt run --select tag:revenue`."""
        self.dbt("run", "--select", "tag:revenue", close_month=close_month)


def base_warehouse(home: Path) -> Warehouse:
    """A workspace with the base catalog and events, ingested (customers, meters, metered
    events) and the line_kinds seed loaded; the tests write the ledger themselves."""
    (home / "catalog").mkdir(parents=True)
    (home / "catalog" / "catalog.yaml").write_text(CATALOG)
    (home / "landing" / "events").mkdir(parents=True)
    (home / "landing" / "events" / "usage.jsonl").write_text(landing_events())
    env = dict(os.environ, METERBOOK_NOW=WAREHOUSE_NOW)
    env.pop("DAGSTER_HOME", None)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "meterbook"), "ingest", "--home", str(home)],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"ingest failed:\n{done.stderr[-3000:]}"
    path = home / "warehouse.duckdb"
    with connect(path, read_only=True) as con:
        (seq,) = con.execute("SELECT max(read_seq) FROM meterbook_raw.raw_events").fetchone()
        metered = con.execute(f"SELECT count(*) FROM {relation('int_events_metered')}").fetchone()
    assert metered[0] > 0, "the base events were not metered"
    base = Warehouse(path, home.parent / "dbt", seq)
    base.dbt("seed", "--select", "line_kinds")
    return base
