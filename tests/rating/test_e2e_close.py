"""End to end through the real pipeline: landing files -> ingest -> metering -> rating ->
`invoices_document`, one October close of a workspace holding one subscription per case:
mid-month start, an upgrade (one subscription ending the day the next begins, with a
sub-account's usage), pinned and unpinned version changes, a 3-period discount, a trial, a
non-UTC timezone, anniversary billing, JPY and KWD. Amounts are worked out by hand."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from rating_harness import invoice, lines, total

from orchestration import pipeline
from orchestration.billing.invoice_json import invoices_document
from orchestration.sql import connect
from orchestration.workspace import Workspace

pytestmark = pytest.mark.slow

CATALOG = """
settings: {invoice_prefix: MB, grace_days: 3, default_currency: USD}
meters:
  - {code: calls, name: API calls, event_name: api.request, aggregation: count}
plans:
  - code: starter
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, name: Platform fee, amount: "20"}]
        charges: [{meter: calls, model: per_unit, unit_price: "0.10"}]
  - code: growth
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, name: Platform fee, amount: "50"}]
        charges: [{meter: calls, model: per_unit, unit_price: "0.05"}]
  - code: evolving
    currency: USD
    versions:
      - {version: 1, effective_from: 2026-01-01, charges: [{meter: calls, model: per_unit, unit_price: "0.10"}]}
      - {version: 2, effective_from: 2026-10-16, charges: [{meter: calls, model: per_unit, unit_price: "0.20"}]}
  - code: trialing
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        trial_days: 14
        fixed_fees: [{code: platform, amount: "31"}]
        charges: [{meter: calls, model: per_unit, unit_price: "0.10"}]
  - code: yen
    currency: JPY
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, amount: "3000"}]
        charges: [{meter: calls, model: per_unit, unit_price: "0.35"}]
  - code: dinar
    currency: KWD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, amount: "1.5"}]
        charges: [{meter: calls, model: per_unit, unit_price: "0.0125"}]
customers:
  - {id: mid, currency: USD}
  - {id: upg, currency: USD}
  - {id: upg-child, parent_id: upg}
  - {id: pin, currency: USD}
  - {id: unpin, currency: USD}
  - {id: disc, currency: USD}
  - {id: disc_late, currency: USD}
  - {id: trial, currency: USD}
  - {id: tokyo, currency: JPY, timezone: Asia/Tokyo, tax_rate: "0.10"}
  - {id: kuwait, currency: KWD, timezone: Asia/Kuwait}
  - {id: anniv, currency: USD}
subscriptions:
  - {id: s_mid, customer_id: mid, plan: starter, start_date: 2026-10-10}
  - {id: s_upg_old, customer_id: upg, plan: starter, start_date: 2026-01-01, end_date: 2026-10-15}
  - {id: s_upg_new, customer_id: upg, plan: growth, start_date: 2026-10-15}
  - {id: s_pin, customer_id: pin, plan: evolving, start_date: 2026-01-01, pin_version: true}
  - {id: s_unpin, customer_id: unpin, plan: evolving, start_date: 2026-01-01}
  - id: s_disc
    customer_id: disc
    plan: starter
    start_date: 2026-08-10
    discounts: [{code: welcome, percent_off: "10", applies_to: all, periods: 3}]
  - id: s_disc_late
    customer_id: disc_late
    plan: starter
    start_date: 2026-07-10
    discounts: [{code: welcome, percent_off: "10", applies_to: all, periods: 3}]
  - {id: s_trial, customer_id: trial, plan: trialing, start_date: 2026-10-10}
  - {id: s_tokyo, customer_id: tokyo, plan: yen, start_date: 2026-04-01}
  - {id: s_kuwait, customer_id: kuwait, plan: dinar, start_date: 2026-04-01}
  - {id: s_anniv, customer_id: anniv, plan: starter, start_date: 2026-03-20, billing_anchor: anniversary}
"""

CALLS = [  # (customer, timestamp, how many)
    ("mid", "2026-10-05T12:00:00Z", 2),  # before the start: not billed
    ("mid", "2026-10-12T12:00:00Z", 5),
    ("upg", "2026-10-10T12:00:00Z", 4),  # old plan
    ("upg", "2026-10-20T12:00:00Z", 5),  # new plan
    ("upg-child", "2026-10-21T12:00:00Z", 1),  # sub-account: bills to upg
    ("pin", "2026-10-20T12:00:00Z", 10),
    ("unpin", "2026-10-05T12:00:00Z", 10),
    ("unpin", "2026-10-20T12:00:00Z", 10),
    ("disc", "2026-10-05T12:00:00Z", 10),
    ("disc_late", "2026-10-05T12:00:00Z", 10),
    ("trial", "2026-10-12T12:00:00Z", 3),  # in trial
    ("trial", "2026-10-28T12:00:00Z", 4),
    ("tokyo", "2026-09-30T14:30:00Z", 1),  # Sep 30 23:30 JST: September
    ("tokyo", "2026-09-30T15:30:00Z", 1),  # Oct 1 00:30 JST: October
    ("tokyo", "2026-10-15T00:00:00Z", 9),
    ("tokyo", "2026-10-31T15:30:00Z", 1),  # Nov 1 00:30 JST: November
    ("kuwait", "2026-09-30T21:30:00Z", 1),  # Oct 1 00:30 in Kuwait (UTC+3)
    ("kuwait", "2026-10-15T00:00:00Z", 1144),
    ("kuwait", "2026-10-31T21:30:00Z", 3),  # Nov 1 in Kuwait
    ("anniv", "2026-09-25T12:00:00Z", 3),  # period Sep 20 .. Oct 20
    ("anniv", "2026-10-22T12:00:00Z", 5),  # next period
]


def _events() -> str:
    out = []
    for customer, at, count in CALLS:
        for n in range(count):
            event = {
                "event_id": f"{customer}-{at}-{n}",
                "customer_id": customer,
                "event_name": "api.request",
                "timestamp": at,
            }
            out.append(json.dumps(event))
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def october(tmp_path_factory):
    home = tmp_path_factory.mktemp("e2e_home")
    (home / "catalog").mkdir()
    (home / "catalog" / "catalog.yaml").write_text(CATALOG)
    (home / "landing" / "events").mkdir(parents=True)
    (home / "landing" / "events" / "calls.jsonl").write_text(_events())
    with pytest.MonkeyPatch.context() as env:
        env.setenv("METERBOOK_NOW", "2026-11-20T00:00:00Z")
        for name in ("METERBOOK_HOME", "METERBOOK_WAREHOUSE", "DAGSTER_HOME"):
            env.setenv(name, "")  # pipeline.activate sets them; restored afterwards
        ws = Workspace.from_env(home)
        pipeline.close_period(ws, "2026-10")
        with connect(ws.warehouse_path, read_only=True) as con:
            return invoices_document(con, "2026-10")


def usage_amounts(inv: dict) -> list[tuple]:
    return [(u["period_start"], u["quantity"], u["amount"]) for u in lines(inv, "usage")]


def test_mid_month_start(october):
    inv = invoice(october, "s_mid")
    assert (inv["period_start"], inv["period_end"]) == ("2026-10-10", "2026-11-01")
    assert usage_amounts(inv) == [("2026-10-10", "5", "0.50")]
    fees = [f["amount"] for f in lines(inv, "fixed_fee")]
    assert fees == ["14.19", "20.00"]  # 20 x 22/31, then November
    assert inv["subtotal"] == "34.69"


def test_upgrade_is_one_subscription_ending_the_day_the_next_begins(october):
    old, new = invoice(october, "s_upg_old"), invoice(october, "s_upg_new")
    assert (old["period_start"], old["period_end"], old["subtotal"]) == (
        "2026-10-01",
        "2026-10-15",
        "0.40",
    )
    assert not lines(old, "fixed_fee")  # no November for the old plan
    assert (new["period_start"], new["period_end"]) == ("2026-10-15", "2026-11-01")
    assert usage_amounts(new) == [("2026-10-15", "6", "0.30")]  # sub-account usage included
    assert [f["amount"] for f in lines(new, "fixed_fee")] == ["27.42", "50.00"]  # 50 x 17/31
    assert new["subtotal"] == "77.72"


def test_pinned_and_unpinned_version_changes(october):
    assert usage_amounts(invoice(october, "s_pin")) == [("2026-10-01", "10", "1.00")]
    assert usage_amounts(invoice(october, "s_unpin")) == [
        ("2026-10-01", "10", "1.00"),
        ("2026-10-16", "10", "2.00"),
    ]


def test_three_period_discount(october):
    third = invoice(october, "s_disc")  # August, September, October: still discounted
    assert [d["amount"] for d in lines(third, "discount")] == ["-2.10"]  # 10% of 1.00 + 20.00
    assert (third["subtotal"], third["discount_total"]) == ("18.90", "2.10")
    fourth = invoice(october, "s_disc_late")
    assert (fourth["subtotal"], fourth["discount_total"]) == ("21.00", "0.00")


def test_trial(october):
    inv = invoice(october, "s_trial")
    assert usage_amounts(inv) == [("2026-10-10", "3", "0.00"), ("2026-10-24", "4", "0.40")]
    assert [f["amount"] for f in lines(inv, "fixed_fee")] == ["8.00", "31.00"]
    assert inv["subtotal"] == "39.40"


def test_tokyo_in_yen(october):
    inv = invoice(october, "s_tokyo")
    assert usage_amounts(inv) == [("2026-10-01", "10", "4")]  # 3.5 half-up
    assert (inv["subtotal"], inv["tax_total"], inv["total"]) == ("3004", "300", "3304")


def test_kuwait_in_dinar(october):
    inv = invoice(october, "s_kuwait")
    assert usage_amounts(inv) == [("2026-10-01", "1145", "14.313")]  # 14.3125 half-up
    assert total(inv, "fixed_fee") == Decimal("1.5")
    assert (inv["subtotal"], inv["total"]) == ("15.813", "15.813")


def test_anniversary_billing(october):
    inv = invoice(october, "s_anniv")
    assert (inv["period_start"], inv["period_end"]) == ("2026-09-20", "2026-10-20")
    assert usage_amounts(inv) == [("2026-09-20", "3", "0.30")]
    assert [(f["period_start"], f["amount"]) for f in lines(inv, "fixed_fee")] == [
        ("2026-10-20", "20.00")  # in advance for Oct 20 .. Nov 20
    ]
