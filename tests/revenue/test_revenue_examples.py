"""The worked examples of revenue recognition (SPEC 8), through the real commands.

One workspace holds a customer per example, each in its own currency so that a currency's
block of `meterbook revenue --json` is that example alone. October and November 2026 are
closed and finalized (an anniversary period that starts in September is closed in October),
`meterbook revenue` runs for September, October and November (October twice, to show a
re-run gives the same bytes), then the tests read the JSON, the journal CSVs and the
warehouse (read-only). Every expected figure is a literal worked out by hand in the comment
beside it; none comes from product code.

    example                                   customer     currency
    1 in-advance fee over a 30-day month      fee_co       EUR
    2 October usage invoiced November 1       usage_co     GBP
    3 a paid pack drawn in part               pack_co      USD
    4 promotional credits                     promo_part   CHF (and promo_full)
    5 paid credits expiring unused            expiry_co    CAD
    6 anniversary period over two months      anniv_co     AUD
    7 a discount spread over three lines      discount_co  SEK
    8 whole yen                               yen_co       JPY

Spreading is cumulative (SPEC 8): part k of n gets round(A*k/n) - round(A*(k-1)/n), half up,
in minor units, so the parts always sum to A.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from meterbook_commands import meterbook as run_meterbook
from meterbook_commands import ok as run_ok

pytestmark = pytest.mark.slow

NOW = "2026-12-20T00:00:00Z"  # every month closed here is past its grace period
CLOSED = ("2026-10", "2026-11")  # closed and finalized
MONTHS = ("2026-09", "2026-10", "2026-11")  # revenue reported

CATALOG = """
settings:
  invoice_prefix: RV
  grace_days: 3
  default_currency: USD
  accounts: {receivable: "1100 Receivable", unbilled: "1150 Unbilled",
             deferred_revenue: "2400 Deferred", revenue_usage: "4000 Usage",
             revenue_fees: "4100 Fees", breakage: "4900 Breakage", tax_payable: "2200 Tax"}
meters:
  - {code: tokens, name: Tokens, event_name: llm.completion, aggregation: sum, expression: tokens}
  - {code: lanes, name: Lanes, event_name: job.run, aggregation: sum, expression: units,
     group_by: [lane]}
plans:
  - code: fee_eur
    currency: EUR
    versions:
      - {version: 1, effective_from: 2026-01-01,
         fixed_fees: [{code: platform, name: Platform, amount: "10.00", timing: in_advance}]}
  - code: usage_gbp
    currency: GBP
    versions:
      - {version: 1, effective_from: 2026-01-01,
         charges: [{meter: tokens, model: per_unit, unit_price: "0.01"}]}
  - code: usage_usd
    currency: USD
    versions:
      - {version: 1, effective_from: 2026-01-01,
         charges: [{meter: tokens, model: per_unit, unit_price: "0.01"}]}
  - code: usage_chf
    currency: CHF
    versions:
      - {version: 1, effective_from: 2026-01-01,
         charges: [{meter: tokens, model: per_unit, unit_price: "0.01"}]}
  - code: usage_cad
    currency: CAD
    versions:
      - {version: 1, effective_from: 2026-01-01,
         charges: [{meter: tokens, model: per_unit, unit_price: "0.01"}]}
  - code: anniversary_aud
    currency: AUD
    versions:
      - {version: 1, effective_from: 2026-01-01,
         fixed_fees: [{code: base, name: Base, amount: "31.00", timing: in_advance}]}
  - code: lanes_sek
    currency: SEK
    versions:
      - {version: 1, effective_from: 2026-01-01,
         charges: [{meter: lanes, model: per_unit, unit_price: "0.01"}]}
  - code: yen
    currency: JPY
    versions:
      - {version: 1, effective_from: 2026-01-01,
         fixed_fees: [{code: platform, name: Platform, amount: "1000", timing: in_advance}],
         charges: [{meter: tokens, model: per_unit, unit_price: "0.1"}]}
customers:
  - {id: fee_co, currency: EUR, timezone: UTC, tax_rate: "0.20"}
  - {id: usage_co, currency: GBP, timezone: UTC, tax_rate: "0"}
  - {id: pack_co, currency: USD, timezone: UTC, tax_rate: "0"}
  - {id: promo_part, currency: CHF, timezone: UTC, tax_rate: "0"}
  - {id: promo_full, currency: CHF, timezone: UTC, tax_rate: "0"}
  - {id: expiry_co, currency: CAD, timezone: UTC, tax_rate: "0"}
  - {id: anniv_co, currency: AUD, timezone: UTC, tax_rate: "0"}
  - {id: discount_co, currency: SEK, timezone: UTC, tax_rate: "0"}
  - {id: yen_co, currency: JPY, timezone: Asia/Tokyo, tax_rate: "0.10"}
subscriptions:
  - {id: sub_fee, customer_id: fee_co, plan: fee_eur, start_date: 2026-10-01}
  - {id: sub_usage, customer_id: usage_co, plan: usage_gbp, start_date: 2026-10-01}
  - {id: sub_pack, customer_id: pack_co, plan: usage_usd, start_date: 2026-10-01}
  - {id: sub_promo_part, customer_id: promo_part, plan: usage_chf, start_date: 2026-10-01}
  - {id: sub_promo_full, customer_id: promo_full, plan: usage_chf, start_date: 2026-10-01}
  - {id: sub_expiry, customer_id: expiry_co, plan: usage_cad, start_date: 2026-10-01}
  - {id: sub_anniv, customer_id: anniv_co, plan: anniversary_aud, start_date: 2026-09-15,
     billing_anchor: anniversary}
  - {id: sub_discount, customer_id: discount_co, plan: lanes_sek, start_date: 2026-10-01,
     discounts: [{code: launch12, percent_off: "12", applies_to: usage}]}
  - {id: sub_yen, customer_id: yen_co, plan: yen, start_date: 2026-10-01}
credit_grants:
  - {id: g_pack, customer_id: pack_co, kind: paid, amount: "5000.00", granted_on: 2026-10-01}
  - {id: g_promo_part, customer_id: promo_part, kind: promotional, amount: "10.00",
     granted_on: 2026-10-01}
  - {id: g_promo_full, customer_id: promo_full, kind: promotional, amount: "20.00",
     granted_on: 2026-10-01}
  - {id: g_expiring, customer_id: expiry_co, kind: paid, amount: "2000.00",
     granted_on: 2026-10-01, expires_on: 2026-11-15}
"""

# (event id, customer, event name, timestamp, properties): all usage is in October
EVENTS = [
    # 2: 100 + 200 + 700 tokens at 0.01 = 10.00
    ("u1", "usage_co", "llm.completion", "2026-10-03T12:00:00Z", {"tokens": 100}),
    ("u2", "usage_co", "llm.completion", "2026-10-10T12:00:00Z", {"tokens": 200}),
    ("u3", "usage_co", "llm.completion", "2026-10-20T12:00:00Z", {"tokens": 700}),
    # 3: 50,000 + 100,000 tokens at 0.01 = 1,500.00, paid out of the 5,000.00 pack
    ("p1", "pack_co", "llm.completion", "2026-10-05T12:00:00Z", {"tokens": 50000}),
    ("p2", "pack_co", "llm.completion", "2026-10-06T12:00:00Z", {"tokens": 100000}),
    # 4: 25.00 of usage against a 10.00 grant; 7.77 against a 20.00 grant
    ("pp1", "promo_part", "llm.completion", "2026-10-07T12:00:00Z", {"tokens": 1000}),
    ("pp2", "promo_part", "llm.completion", "2026-10-08T12:00:00Z", {"tokens": 1500}),
    ("pf1", "promo_full", "llm.completion", "2026-10-09T12:00:00Z", {"tokens": 777}),
    # 7: lane a 110 units (1.10), lane b 100 + 120 (2.20), lane c 370 (3.70)
    ("d1", "discount_co", "job.run", "2026-10-05T12:00:00Z", {"units": 110, "lane": "a"}),
    ("d2", "discount_co", "job.run", "2026-10-06T12:00:00Z", {"units": 100, "lane": "b"}),
    ("d3", "discount_co", "job.run", "2026-10-07T12:00:00Z", {"units": 120, "lane": "b"}),
    ("d4", "discount_co", "job.run", "2026-10-08T12:00:00Z", {"units": 370, "lane": "c"}),
    # 8: 333 + 333 + 334 tokens at 0.1 yen = 100 yen. 03:00Z is noon in Tokyo (UTC+9), the
    # same date; 2026-10-13T16:00Z is 01:00 on October 14 in Tokyo
    ("y1", "yen_co", "llm.completion", "2026-10-11T03:00:00Z", {"tokens": 333}),
    ("y2", "yen_co", "llm.completion", "2026-10-12T03:00:00Z", {"tokens": 333}),
    ("y3", "yen_co", "llm.completion", "2026-10-13T16:00:00Z", {"tokens": 334}),
]

ZERO_BLOCK_2 = {"opening": "0.00", "recognized": "0.00", "invoiced": "0.00", "closing": "0.00"}
NO_DEFERRED_2 = {
    "opening": "0.00",
    "billed": "0.00",
    "recognized": "0.00",
    "breakage": "0.00",
    "closing": "0.00",
}


# ----------------------------------------------------------------------------- workspace


def meterbook(home: Path, *args: str) -> subprocess.CompletedProcess:
    return run_meterbook(home, NOW, *args)


def ok(home: Path, *args: str) -> str:
    return run_ok(home, NOW, *args)


class Workspace:
    """What the commands produced: the revenue JSON (text and parsed) and journal CSV (text)
    of each month, October's second run, and the invoices of each close month."""

    def __init__(self, home: Path):
        self.home = home
        self.revenue_text: dict[str, str] = {}
        self.journal_text: dict[str, str] = {}
        self.invoices: dict[str, list[dict]] = {}
        self.rerun: tuple[str, str] = ("", "")
        self.seconds: dict[str, float] = {}

    def revenue(self, month: str) -> dict:
        return json.loads(self.revenue_text[month])

    def journal(self, month: str) -> list[dict[str, str]]:
        return list(csv.DictReader(io.StringIO(self.journal_text[month])))

    def invoice(self, customer: str, period_start: str) -> dict:
        found = [
            inv
            for invoices in self.invoices.values()
            for inv in invoices
            if inv["customer_id"] == customer and inv["period_start"] == period_start
        ]
        assert len(found) == 1, f"{customer}: {len(found)} invoices starting {period_start}"
        assert found[0]["status"] == "finalized", found[0]["status"]
        return found[0]

    def line_id(self, customer: str, invoice_start: str, kind: str, **match) -> str:
        """The one line of `kind` on the invoice of `customer` starting `invoice_start`,
        further matched on line fields (the line's own `period_start`, `group`, ...)."""
        lines = [
            line
            for line in self.invoice(customer, invoice_start)["lines"]
            if line["kind"] == kind and all(line[k] == v for k, v in match.items())
        ]
        assert len(lines) == 1, f"{customer} {invoice_start} {kind} {match}: {lines}"
        return lines[0]["line_id"]


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Workspace:
    home = tmp_path_factory.mktemp("revenue") / "home"
    (home / "catalog").mkdir(parents=True)
    (home / "catalog" / "catalog.yaml").write_text(CATALOG)
    events = home / "landing" / "events" / "2026" / "10"
    events.mkdir(parents=True)
    (events / "usage.jsonl").write_text(
        "".join(
            json.dumps(
                {"event_id": i, "customer_id": c, "event_name": n, "timestamp": t, "properties": p}
            )
            + "\n"
            for i, c, n, t, p in EVENTS
        )
    )
    out = Workspace(home)

    def timed(name: str, *args: str) -> str:
        started = time.monotonic()
        stdout = ok(home, *args)
        out.seconds[name] = round(time.monotonic() - started, 1)
        return stdout

    for month in CLOSED:
        timed(f"close {month}", "close", "--period", month)
        timed(f"finalize {month}", "finalize", "--period", month)
        out.invoices[month] = json.loads(ok(home, "invoices", "--period", month, "--json"))[
            "invoices"
        ]
    for month in MONTHS:
        journal = home / f"journal-{month}.csv"
        out.revenue_text[month] = timed(
            f"revenue {month}", "revenue", "--period", month, "--json", "--journal", str(journal)
        )
        out.journal_text[month] = journal.read_text(encoding="utf-8")
    # October again, after November was built: the same ledger gives the same bytes
    again = home / "journal-2026-10-again.csv"
    args = ("revenue", "--period", "2026-10", "--json", "--journal", str(again))
    text = timed("revenue 2026-10 again", *args)
    out.rerun = (text, again.read_text(encoding="utf-8"))
    print(f"\nmeterbook command seconds: {out.seconds}")
    return out


@pytest.fixture(scope="module")
def con(ws: Workspace):
    from orchestration.defs.dbt.manifest import ensure_manifest  # noqa: PLC0415

    ensure_manifest()  # the checks and `relation` name models through the manifest
    connection = duckdb.connect(str(ws.home / "warehouse.duckdb"), read_only=True)
    yield connection
    connection.close()


def _rel(model: str) -> str:
    from orchestration.warehouse.models import relation  # noqa: PLC0415

    return relation(model)


def money(value: Decimal, places: int) -> str:
    """A warehouse DECIMAL(38, 12) as the currency writes it; an amount with digits below the
    minor unit fails here rather than being rounded out of sight."""
    exact = value.quantize(Decimal(1).scaleb(-places))
    assert exact == value, f"{value} is not a whole number of minor units ({places} decimals)"
    return f"{exact:.{places}f}"


def schedule(
    con,
    line_id: str,
    places: int = 2,
    row_type: str = "revenue",
    reduces: str | None = None,
) -> dict[str, str]:
    """{revenue_date: amount} of one line's schedule rows (not reversals) of `row_type`;
    with `reduces`, the rows of a discount or credit that follow that line."""
    rows = con.execute(
        f"SELECT revenue_date, sum(amount) FROM {_rel('fct_revenue_schedule')}"
        " WHERE line_id = ? AND row_type = ? AND NOT reversal"
        " AND reduces_line_id IS NOT DISTINCT FROM ? GROUP BY ALL ORDER BY 1",
        [line_id, row_type, reduces],
    ).fetchall()
    return {day.isoformat(): money(amount, places) for day, amount in rows}


def by_month(days: dict[str, str], places: int = 2) -> dict[str, str]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for day, amount in days.items():
        totals[day[:7]] += Decimal(amount)
    return {month: money(total, places) for month, total in sorted(totals.items())}


def customer_row(document: dict, customer: str) -> dict | None:
    rows = [c for c in document["customers"] if c["customer_id"] == customer]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


def journal_rows(ws: Workspace, month: str, day: str, currency: str) -> list[tuple]:
    return sorted(
        (r["entry"], r["account"], r["debit"], r["credit"])
        for r in ws.journal(month)
        if r["date"] == day and r["currency"] == currency
    )


# ----------------------------------------------------------------------------- 1. the fee


def test_1_in_advance_fee_follows_the_cumulative_rounding_pattern(ws, con):
    # The October invoice (dated 2026-11-01) bills November's 10.00 in advance. Day d of the
    # 30 gets round(1000*d/30) - round(1000*(d-1)/30) cents: d = 3k+1: 33.33 -> 33;
    # d = 3k+2: 66.67 -> 67, so 34; d = 3k+3: exactly 100k, so 33. 10 x (33+34+33) = 1000.
    fee = ws.line_id("fee_co", "2026-10-01", "fixed_fee", period_start="2026-11-01")
    days = schedule(con, fee)
    expected = dict(
        zip(
            [f"2026-11-{d:02d}" for d in range(1, 31)],
            ["0.33", "0.34", "0.33"] * 10,
            strict=True,
        )
    )
    assert days == expected, f"November's fee is not spread 0.33/0.34/0.33: {days}"
    assert sum(Decimal(a) for a in days.values()) == Decimal("10.00")


def test_1_in_advance_fee_is_deferred_when_billed_and_recognized_through_november(ws, con):
    # fee_co (EUR, tax 20 %) starts 2026-10-01; the October invoice, billed 2026-11-01,
    # carries October's fee (10.00, its service already given: unbilled in October) and
    # November's (10.00 in advance). November: 10.00 enters deferred on the 1st and all of it
    # is recognized by the 30th; October's 10.00 leaves unbilled when invoiced.
    november = ws.revenue("2026-11")["currencies"]["EUR"]
    assert november == {
        "recognized": "10.00",
        "recognized_by_kind": {"fixed_fee": "10.00"},
        "deferred": {
            "opening": "0.00",
            "billed": "10.00",
            "recognized": "10.00",
            "breakage": "0.00",
            "closing": "0.00",
        },
        "unbilled": {
            "opening": "10.00",
            "recognized": "0.00",
            "invoiced": "10.00",
            "closing": "0.00",
        },
    }, november
    # The journal of 2026-11-01: the invoice (20.00 excluding tax) clears October's 10.00 of
    # unbilled and puts 10.00 into deferred; tax 20 % of 20.00 = 4.00 is payable, not revenue;
    # day 1 of the fee (0.33) moves from deferred to fee revenue.
    assert journal_rows(ws, "2026-11", "2026-11-01", "EUR") == sorted(
        [
            ("invoice", "1100 Receivable", "20.00", "0.00"),
            ("invoice", "1150 Unbilled", "0.00", "10.00"),
            ("invoice", "2400 Deferred", "0.00", "10.00"),
            ("tax", "1100 Receivable", "4.00", "0.00"),
            ("tax", "2200 Tax", "0.00", "4.00"),
            ("revenue", "2400 Deferred", "0.33", "0.00"),
            ("revenue", "4100 Fees", "0.00", "0.33"),
        ]
    )


def test_1_the_fee_for_october_is_recognized_in_october_before_it_is_billed(ws, con):
    # October's fee: 10.00 over 31 days (round(1000*d/31): 32, 65, 97 -> 0.32, 0.33, 0.32),
    # all in October, all before the invoice date: unbilled at October 31.
    fee = ws.line_id("fee_co", "2026-10-01", "fixed_fee", period_start="2026-10-01")
    days = schedule(con, fee)
    assert list(days.values())[:3] == ["0.32", "0.33", "0.32"], days
    assert by_month(days) == {"2026-10": "10.00"}
    assert ws.revenue("2026-10")["currencies"]["EUR"] == {
        "recognized": "10.00",
        "recognized_by_kind": {"fixed_fee": "10.00"},
        "deferred": NO_DEFERRED_2,
        "unbilled": {
            "opening": "0.00",
            "recognized": "10.00",
            "invoiced": "0.00",
            "closing": "10.00",
        },
    }


# ----------------------------------------------------------------------------- 2. usage


def test_2_october_usage_is_recognized_on_its_days_by_daily_quantity(ws, con):
    # 100, 200 and 700 tokens at 0.01 on Oct 3, 10 and 20: 1.00, 2.00 and 7.00 on those days.
    usage = ws.line_id("usage_co", "2026-10-01", "usage")
    assert schedule(con, usage) == {
        "2026-10-03": "1.00",
        "2026-10-10": "2.00",
        "2026-10-20": "7.00",
    }


def test_2_october_usage_is_unbilled_at_october_31_and_invoiced_november_1(ws):
    # October: 10.00 recognized, nothing invoiced yet (the invoice is dated 2026-11-01):
    # unbilled 0 + 10.00 - 0 = 10.00. November: opening 10.00, invoiced 10.00, closing 0.
    october, november = (ws.revenue(m)["currencies"]["GBP"] for m in ("2026-10", "2026-11"))
    assert october == {
        "recognized": "10.00",
        "recognized_by_kind": {"usage": "10.00"},
        "deferred": NO_DEFERRED_2,
        "unbilled": {
            "opening": "0.00",
            "recognized": "10.00",
            "invoiced": "0.00",
            "closing": "10.00",
        },
    }, october
    assert november == {
        "recognized": "0.00",
        "recognized_by_kind": {},
        "deferred": NO_DEFERRED_2,
        "unbilled": {
            "opening": "10.00",
            "recognized": "0.00",
            "invoiced": "10.00",
            "closing": "0.00",
        },
    }, november
    assert customer_row(ws.revenue("2026-10"), "usage_co") == {
        "customer_id": "usage_co",
        "currency": "GBP",
        "recognized": "10.00",
        "deferred_closing": "0.00",
        "unbilled_closing": "10.00",
    }
    # on 2026-11-01 the invoice moves the 10.00 from unbilled to receivable, no revenue moves
    assert journal_rows(ws, "2026-11", "2026-11-01", "GBP") == sorted(
        [
            ("invoice", "1100 Receivable", "10.00", "0.00"),
            ("invoice", "1150 Unbilled", "0.00", "10.00"),
        ]
    )


# ----------------------------------------------------------------------------- 3. paid pack


def test_3_paid_pack_is_deferred_when_billed_and_leaves_deferred_as_drawn(ws, con):
    # The October invoice (billed 2026-11-01, tax 0) carries the 5,000.00 pack bought on
    # 2026-10-01 and 1,500.00 of October usage, which the pack pays (credits_applied).
    # November: deferred 0 + 5,000.00 billed - 1,500.00 drawn - 0 breakage = 3,500.00.
    invoice = ws.invoice("pack_co", "2026-10-01")
    assert (invoice["subtotal"], invoice["credits_applied"], invoice["amount_due"]) == (
        "6500.00",
        "1500.00",
        "5000.00",
    )
    november = ws.revenue("2026-11")["currencies"]["USD"]
    assert november["deferred"] == {
        "opening": "0.00",
        "billed": "5000.00",
        "recognized": "1500.00",
        "breakage": "0.00",
        "closing": "3500.00",
    }, november
    assert november["unbilled"] == {
        "opening": "1500.00",
        "recognized": "0.00",
        "invoiced": "1500.00",
        "closing": "0.00",
    }, november
    # buying credits is not revenue, drawing them is not revenue either (the usage they pay
    # was recognized in October): nothing recognized in November
    assert (november["recognized"], november["recognized_by_kind"]) == ("0.00", {})
    assert customer_row(ws.revenue("2026-11"), "pack_co")["deferred_closing"] == "3500.00"
    # the draw: 1,500.00 leaves deferred on the invoice's date
    purchase = ws.line_id("pack_co", "2026-10-01", "credit_purchase")
    assert schedule(con, purchase, row_type="drawn") == {"2026-11-01": "1500.00"}
    assert schedule(con, purchase) == {}, "a credit purchase is never revenue when billed"
    assert journal_rows(ws, "2026-11", "2026-11-01", "USD") == sorted(
        [
            # receivable 6,500.00 = unbilled 1,500.00 (October's usage) + deferred 5,000.00
            ("invoice", "1100 Receivable", "6500.00", "0.00"),
            ("invoice", "1150 Unbilled", "0.00", "1500.00"),
            ("invoice", "2400 Deferred", "0.00", "5000.00"),
            # the pack pays 1,500.00 of the receivable out of deferred revenue
            ("credits_applied", "2400 Deferred", "1500.00", "0.00"),
            ("credits_applied", "1100 Receivable", "0.00", "1500.00"),
        ]
    )


def test_3_usage_paid_by_the_pack_is_usage_revenue(ws, con):
    # 50,000 and 100,000 tokens at 0.01: 500.00 on Oct 5 and 1,000.00 on Oct 6, usage revenue.
    usage = ws.line_id("pack_co", "2026-10-01", "usage")
    assert schedule(con, usage) == {"2026-10-05": "500.00", "2026-10-06": "1000.00"}
    october = ws.revenue("2026-10")["currencies"]["USD"]
    assert october == {
        "recognized": "1500.00",
        "recognized_by_kind": {"usage": "1500.00"},
        "deferred": NO_DEFERRED_2,
        "unbilled": {
            "opening": "0.00",
            "recognized": "1500.00",
            "invoiced": "0.00",
            "closing": "1500.00",
        },
    }, october


# ----------------------------------------------------------------------------- 4. promotional


def test_4_promotional_credit_nets_the_line_it_covers(ws, con):
    # promo_part: 1,000 + 1,500 tokens at 0.01 = 10.00 on Oct 7 + 15.00 on Oct 8 = 25.00; the
    # 10.00 grant pays 10.00 of it (promotional_credit -10.00). The -10.00 follows the line's
    # days by their amounts: round(-1000*1000/2500) = -400 -> -4.00 on the 7th, -6.00 on the 8th.
    # Recognized: 6.00 + 9.00 = 15.00, the rest the customer pays.
    usage = ws.line_id("promo_part", "2026-10-01", "usage")
    credit = ws.line_id("promo_part", "2026-10-01", "promotional_credit")
    assert schedule(con, usage) == {"2026-10-07": "10.00", "2026-10-08": "15.00"}
    assert schedule(con, credit, reduces=usage) == {"2026-10-07": "-4.00", "2026-10-08": "-6.00"}
    assert schedule(con, credit) == {}, "the whole credit follows the line it covers"
    assert customer_row(ws.revenue("2026-10"), "promo_part")["recognized"] == "15.00"


def test_4_promotional_credit_covering_a_line_in_full_recognizes_nothing(ws, con):
    # promo_full: 777 tokens = 7.77 on Oct 9; the 20.00 grant pays all of it (-7.77):
    # 7.77 - 7.77 = 0.00 recognized, on that day and in total.
    usage = ws.line_id("promo_full", "2026-10-01", "usage")
    credit = ws.line_id("promo_full", "2026-10-01", "promotional_credit")
    assert schedule(con, usage) == {"2026-10-09": "7.77"}
    assert schedule(con, credit, reduces=usage) == {"2026-10-09": "-7.77"}
    row = customer_row(ws.revenue("2026-10"), "promo_full")
    assert row is None or row["recognized"] == "0.00", row
    # CHF in October: 15.00 + 0.00, all usage (the credits folded into the usage they reduce)
    assert ws.revenue("2026-10")["currencies"]["CHF"] == {
        "recognized": "15.00",
        "recognized_by_kind": {"usage": "15.00"},
        "deferred": NO_DEFERRED_2,
        "unbilled": {
            "opening": "0.00",
            "recognized": "15.00",
            "invoiced": "0.00",
            "closing": "15.00",
        },
    }


# ----------------------------------------------------------------------------- 5. breakage


def test_5_paid_credits_expiring_unused_are_breakage_on_the_expiry_date(ws, con):
    # expiry_co buys 2,000.00 of paid credits on 2026-10-01 (a credit_purchase line on the
    # October invoice, dated 2026-11-01, tax 0); it has no usage, nothing draws them; they
    # expire on 2026-11-15. November: deferred 0 + 2,000.00 billed - 0 recognized - 2,000.00
    # breakage = 0; recognized 2,000.00, all of it breakage. October: nothing is billed yet.
    assert "CAD" not in ws.revenue("2026-10")["currencies"], ws.revenue("2026-10")["currencies"]
    november = ws.revenue("2026-11")["currencies"]["CAD"]
    assert november == {
        "recognized": "2000.00",
        "recognized_by_kind": {"breakage": "2000.00"},
        "deferred": {
            "opening": "0.00",
            "billed": "2000.00",
            "recognized": "0.00",
            "breakage": "2000.00",
            "closing": "0.00",
        },
        "unbilled": ZERO_BLOCK_2,
    }, november
    assert customer_row(ws.revenue("2026-11"), "expiry_co") == {
        "customer_id": "expiry_co",
        "currency": "CAD",
        "recognized": "2000.00",
        "deferred_closing": "0.00",
        "unbilled_closing": "0.00",
    }
    purchase = ws.line_id("expiry_co", "2026-10-01", "credit_purchase")
    assert schedule(con, purchase, row_type="breakage") == {"2026-11-15": "2000.00"}
    assert schedule(con, purchase) == {}, "a credit purchase is never revenue when billed"
    # 2026-11-01: billed into deferred revenue; 2026-11-15: out of it, as breakage revenue
    assert journal_rows(ws, "2026-11", "2026-11-01", "CAD") == sorted(
        [
            ("invoice", "1100 Receivable", "2000.00", "0.00"),
            ("invoice", "2400 Deferred", "0.00", "2000.00"),
        ]
    )
    assert journal_rows(ws, "2026-11", "2026-11-15", "CAD") == sorted(
        [
            ("breakage", "2400 Deferred", "2000.00", "0.00"),
            ("breakage", "4900 Breakage", "0.00", "2000.00"),
        ]
    )


# ----------------------------------------------------------------------------- 6. anniversary


def test_6_anniversary_fee_lands_in_each_month_in_proportion_to_its_days(ws, con):
    # SPEC 3.3: anniversary periods start on start_date's day of the month, so anniv_co
    # (start 2026-09-15) has periods [09-15, 10-15), [10-15, 11-15), [11-15, 12-15). The
    # invoice of [09-15, 10-15) (closed in October, dated 10-15) carries that period's fee
    # and the next one's in advance; the one of [10-15, 11-15) carries [11-15, 12-15)'s.
    # [10-15, 11-15) has 31 days (17 in October, 14 in November): 31.00 / 31 = 1.00 a day,
    # so 17.00 in October and 14.00 in November.
    fee = ws.line_id("anniv_co", "2026-09-15", "fixed_fee", period_start="2026-10-15")
    days = schedule(con, fee)
    assert set(days.values()) == {"1.00"} and len(days) == 31, days
    assert by_month(days) == {"2026-10": "17.00", "2026-11": "14.00"}
    # [09-15, 10-15) has 30 days, 16 in September: round(3100*16/30) = round(1653.33) = 1653,
    # so 16.53 in September and 31.00 - 16.53 = 14.47 in October.
    first = ws.line_id("anniv_co", "2026-09-15", "fixed_fee", period_start="2026-09-15")
    assert by_month(schedule(con, first)) == {"2026-09": "16.53", "2026-10": "14.47"}
    # [11-15, 12-15): 30 days, 16 in November: 16.53, and 14.47 in December.
    third = ws.line_id("anniv_co", "2026-10-15", "fixed_fee", period_start="2026-11-15")
    assert by_month(schedule(con, third)) == {"2026-11": "16.53", "2026-12": "14.47"}
    # 2026-10-15, the invoice's date: it bills 62.00 (tax 0); the first fee's 31.00 was
    # recognized already (out of unbilled), the second's 31.00 is deferred, and day 1 of the
    # second (1.00) leaves deferred as fee revenue.
    assert journal_rows(ws, "2026-10", "2026-10-15", "AUD") == sorted(
        [
            ("invoice", "1100 Receivable", "62.00", "0.00"),
            ("invoice", "1150 Unbilled", "0.00", "31.00"),
            ("invoice", "2400 Deferred", "0.00", "31.00"),
            ("revenue", "2400 Deferred", "1.00", "0.00"),
            ("revenue", "4100 Fees", "0.00", "1.00"),
        ]
    )


def test_6_anniversary_roll_forward_over_three_months(ws):
    # September: 16.53 recognized, not invoiced before 10-15: unbilled 16.53.
    # October: 14.47 (first fee) + 17.00 (second) = 31.47. The 10-15 invoice bills 62.00:
    # 16.53 + 14.47 = 31.00 already recognized leaves unbilled, the other 31.00 is deferred;
    # 17.00 of it recognized by October 31: deferred closing 14.00, unbilled closing 0.
    # November: 14.00 (second fee) + 16.53 (third) = 30.53; the 11-15 invoice defers 31.00:
    # 14.00 + 31.00 - 30.53 = 14.47.
    september, october, november = (ws.revenue(m)["currencies"]["AUD"] for m in MONTHS)
    assert september == {
        "recognized": "16.53",
        "recognized_by_kind": {"fixed_fee": "16.53"},
        "deferred": NO_DEFERRED_2,
        "unbilled": {
            "opening": "0.00",
            "recognized": "16.53",
            "invoiced": "0.00",
            "closing": "16.53",
        },
    }, september
    assert october == {
        "recognized": "31.47",
        "recognized_by_kind": {"fixed_fee": "31.47"},
        "deferred": {
            "opening": "0.00",
            "billed": "31.00",
            "recognized": "17.00",
            "breakage": "0.00",
            "closing": "14.00",
        },
        "unbilled": {
            "opening": "16.53",
            "recognized": "14.47",
            "invoiced": "31.00",
            "closing": "0.00",
        },
    }, october
    assert november == {
        "recognized": "30.53",
        "recognized_by_kind": {"fixed_fee": "30.53"},
        "deferred": {
            "opening": "14.00",
            "billed": "31.00",
            "recognized": "30.53",
            "breakage": "0.00",
            "closing": "14.47",
        },
        "unbilled": ZERO_BLOCK_2,
    }, november


# ----------------------------------------------------------------------------- 7. discount


def test_7_discount_is_split_over_its_lines_by_cumulative_rounding(ws, con):
    # Lines a 1.10, b 2.20, c 3.70 (sum 7.00); launch12 is 12 % of 7.00 = -0.84 (-84 cents).
    # Cumulative in line order: a: round(-84*110/700) = round(-13.2) = -13;
    # a+b: round(-84*330/700) = round(-39.6) = -40, so b = -27; c = -84 - (-40) = -44.
    # (Rounding each alone gives -13, -26, -44 = -83: a cent short.)
    invoice = ws.invoice("discount_co", "2026-10-01")
    assert [(x["kind"], x["amount"]) for x in invoice["lines"]] == [
        ("usage", "1.10"),
        ("usage", "2.20"),
        ("usage", "3.70"),
        ("discount", "-0.84"),
    ], invoice["lines"]
    a, b, c = (
        ws.line_id("discount_co", "2026-10-01", "usage", group={"lane": lane})
        for lane in ("a", "b", "c")
    )
    discount = ws.line_id("discount_co", "2026-10-01", "discount")
    rows = con.execute(
        f"SELECT reduces_line_id, revenue_kind, sum(amount) FROM {_rel('fct_revenue_schedule')}"
        " WHERE line_id = ? AND row_type = 'revenue' AND NOT reversal GROUP BY ALL",
        [discount],
    ).fetchall()
    parts = {target: (kind, money(amount, 2)) for target, kind, amount in rows}
    assert parts == {
        a: ("usage", "-0.13"),
        b: ("usage", "-0.27"),
        c: ("usage", "-0.44"),
    }, parts


def test_7_each_discount_part_is_recognized_with_its_line(ws, con):
    # a: 1.10 on Oct 5, its part -0.13 on Oct 5. c: 3.70 on Oct 8, -0.44 on Oct 8.
    # b: 100 units (1.00) on Oct 6 and 120 (1.20) on Oct 7; its -0.27 by those amounts:
    # round(-27*100/220) = round(-12.27) = -12 -> -0.12 on the 6th, -0.15 on the 7th.
    a, b, c = (
        ws.line_id("discount_co", "2026-10-01", "usage", group={"lane": lane})
        for lane in ("a", "b", "c")
    )
    discount = ws.line_id("discount_co", "2026-10-01", "discount")
    assert schedule(con, a) == {"2026-10-05": "1.10"}
    assert schedule(con, b) == {"2026-10-06": "1.00", "2026-10-07": "1.20"}
    assert schedule(con, c) == {"2026-10-08": "3.70"}
    assert schedule(con, discount, reduces=a) == {"2026-10-05": "-0.13"}
    assert schedule(con, discount, reduces=b) == {"2026-10-06": "-0.12", "2026-10-07": "-0.15"}
    assert schedule(con, discount, reduces=c) == {"2026-10-08": "-0.44"}
    assert schedule(con, discount) == {}, "the whole discount follows the lines it reduces"
    # 7.00 - 0.84 = 6.16, reported as usage (the discount folded into its lines)
    assert ws.revenue("2026-10")["currencies"]["SEK"] == {
        "recognized": "6.16",
        "recognized_by_kind": {"usage": "6.16"},
        "deferred": NO_DEFERRED_2,
        "unbilled": {
            "opening": "0.00",
            "recognized": "6.16",
            "invoiced": "0.00",
            "closing": "6.16",
        },
    }


# ----------------------------------------------------------------------------- 8. yen


def test_8_yen_amounts_are_whole_and_spread_at_the_yen(ws, con):
    # Usage: 333, 333, 334 tokens at 0.1 = 100 yen on Oct 11, 12 and 14 (Tokyo days: the
    # last event is Oct 13 in UTC): round(100*333/1000) = 33; round(100*666/1000) =
    # round(66.6) = 67 -> 34; 100 - 67 = 33.
    usage = ws.line_id("yen_co", "2026-10-01", "usage")
    assert schedule(con, usage, places=0) == {
        "2026-10-11": "33",
        "2026-10-12": "34",
        "2026-10-14": "33",
    }
    # November's fee, 1000 yen over 30 days: round(1000*d/30) gives 33, 67, 100, ... so
    # 33, 34, 33 repeated ten times.
    november_fee = ws.line_id("yen_co", "2026-10-01", "fixed_fee", period_start="2026-11-01")
    days = schedule(con, november_fee, places=0)
    assert list(days.values()) == ["33", "34", "33"] * 10, days
    assert list(days) == [f"2026-11-{d:02d}" for d in range(1, 31)], days
    # October's fee, 1000 over 31 days: round(1000*d/31) = 32, 65 (64.52), 97 (96.77),
    # 129 (129.03) -> 32, 33, 32, 32, ...; every day 32 or 33, summing to 1000.
    october_fee = ws.line_id("yen_co", "2026-10-01", "fixed_fee", period_start="2026-10-01")
    days = schedule(con, october_fee, places=0)
    assert list(days.values())[:4] == ["32", "33", "32", "32"], days
    assert set(days.values()) == {"32", "33"} and len(days) == 31, days
    assert sum(int(v) for v in days.values()) == 1000


def test_8_yen_report_and_journal_have_no_minor_digits(ws):
    # October: 100 usage + 1000 fee = 1100, all before the 11-01 invoice: unbilled 1100.
    # November: the November fee, 1000, deferred on 11-01 and recognized in full; the October
    # invoice (2100 + 10 % tax = 210) clears the 1100 unbilled.
    october, november = (ws.revenue(m)["currencies"]["JPY"] for m in ("2026-10", "2026-11"))
    assert october == {
        "recognized": "1100",
        "recognized_by_kind": {"fixed_fee": "1000", "usage": "100"},
        "deferred": {
            "opening": "0",
            "billed": "0",
            "recognized": "0",
            "breakage": "0",
            "closing": "0",
        },
        "unbilled": {"opening": "0", "recognized": "1100", "invoiced": "0", "closing": "1100"},
    }, october
    assert november == {
        "recognized": "1000",
        "recognized_by_kind": {"fixed_fee": "1000"},
        "deferred": {
            "opening": "0",
            "billed": "1000",
            "recognized": "1000",
            "breakage": "0",
            "closing": "0",
        },
        "unbilled": {"opening": "1100", "recognized": "0", "invoiced": "1100", "closing": "0"},
    }, november
    assert journal_rows(ws, "2026-11", "2026-11-01", "JPY") == sorted(
        [
            ("invoice", "1100 Receivable", "2100", "0"),
            ("invoice", "1150 Unbilled", "0", "1100"),
            ("invoice", "2400 Deferred", "0", "1000"),
            ("tax", "1100 Receivable", "210", "0"),
            ("tax", "2200 Tax", "0", "210"),
            ("revenue", "2400 Deferred", "33", "0"),
            ("revenue", "4100 Fees", "0", "33"),
        ]
    )


# ----------------------------------------------------------------------------- invariants


def test_months_report_exactly_the_examples_currencies(ws):
    # Only anniv_co recognizes anything in September; CAD has nothing before November.
    assert list(ws.revenue("2026-09")["currencies"]) == ["AUD"]
    assert ws.revenue("2026-09")["customers"] == [
        {
            "customer_id": "anniv_co",
            "currency": "AUD",
            "recognized": "16.53",
            "deferred_closing": "0.00",
            "unbilled_closing": "16.53",
        }
    ]
    every = ["AUD", "CAD", "CHF", "EUR", "GBP", "JPY", "SEK", "USD"]
    assert list(ws.revenue("2026-10")["currencies"]) == [c for c in every if c != "CAD"]
    assert list(ws.revenue("2026-11")["currencies"]) == every


def test_rerun_gives_byte_identical_json_and_journal(ws):
    text, journal = ws.rerun
    assert text == ws.revenue_text["2026-10"], (
        "a second `revenue --period 2026-10` changed the JSON"
    )
    assert journal == ws.journal_text["2026-10"], "a second run changed the journal CSV"


@pytest.mark.parametrize("month", MONTHS)
def test_journal_balances_per_day_and_currency(ws, month):
    rows = ws.journal(month)
    assert rows, f"the {month} journal is empty"
    assert list(rows[0]) == ["date", "currency", "entry", "account", "debit", "credit"]
    sums: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for row in rows:
        assert row["date"].startswith(month), row
        sums[row["date"], row["currency"]][0] += Decimal(row["debit"])
        sums[row["date"], row["currency"]][1] += Decimal(row["credit"])
    unbalanced = {key: (d, c) for key, (d, c) in sums.items() if d != c}
    assert not unbalanced, f"debits != credits on {unbalanced}"


def test_schedule_sums_check_passes(con):
    from orchestration.billing.revenue.checks import check_schedule_sums  # noqa: PLC0415

    passed, metadata = check_schedule_sums(con)
    assert passed, metadata


@pytest.mark.parametrize("month", MONTHS)
def test_balance_journal_and_deferred_checks_pass(con, month):
    from orchestration.billing.revenue.checks import (  # noqa: PLC0415
        check_balances,
        check_deferred,
        check_journal,
    )

    for check in (check_balances, check_journal, check_deferred):
        passed, metadata = check(con, month)
        assert passed, f"{check.__name__}({month}): {metadata}"


def test_the_revenue_dbt_unit_tests_pass(ws, tmp_path):
    """The hand-made rows in the revenue models' YAML (`unit_tests:`): dbt needs the models'
    inputs built for their column types, so they run on a copy of this workspace's warehouse
    (the module's read-only connection holds the original)."""
    repo = Path(__file__).resolve().parents[2]
    warehouse = tmp_path / "warehouse.duckdb"
    shutil.copy(ws.home / "warehouse.duckdb", warehouse)
    project = repo / "dbt_project"
    target = tmp_path / "target"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "test", "--select", "test_type:unit",
         "--project-dir", str(project), "--profiles-dir", str(project),
         "--target-path", str(target)],
        capture_output=True, text=True, check=False,
        env={**os.environ, "METERBOOK_WAREHOUSE": str(warehouse)},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:]
    results = json.loads((target / "run_results.json").read_text())["results"]
    ran = {r["unique_id"].split(".")[-1]: r["status"] for r in results}
    revenue = {name: status for name, status in ran.items() if name.startswith("revenue_")}
    assert len(revenue) >= 7, ran  # every revenue unit test ran
    assert set(revenue.values()) == {"pass"}, revenue
