"""The rating models end to end on stated quantities: one October close of a catalog that
touches every rule, run twice (byte-identical), then a November close after the catalog
changed (a fixed_fee_credit). Metering is a stub (rating_harness); amounts are by hand."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from rating_harness import RatingProject, catalog_from_text, invoice, lines, total, use

CATALOG = """
meters:
  - {code: calls, name: API calls, event_name: api.request, aggregation: count}
  - {code: tokens, name: LLM tokens, event_name: llm, aggregation: sum, expression: n, group_by: [model]}
  - {code: gpu, name: GPU hours, event_name: gpu, aggregation: sum, expression: h}
  - {code: spend, name: Spend, event_name: pay, aggregation: sum, expression: usd}

plans:
  - code: basic
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees:
          - {code: platform, name: Platform fee, amount: "30"}
          - {code: support, name: Support, amount: "9.30", timing: in_arrears}
        charges:
          - {meter: calls, model: per_unit, unit_price: "0.01", free_units: 100, minimum: "5.00", maximum: "20.00"}
          - meter: tokens
            model: graduated
            tiers: [{up_to: 1000, unit_price: "0.002", flat_fee: "1"}, {up_to: null, unit_price: "0.001"}]
        minimum_spend: "50"
      - version: 2
        effective_from: 2026-10-16
        fixed_fees:
          - {code: platform, name: Platform fee, amount: "62"}
          - {code: support, name: Support, amount: "9.30", timing: in_arrears}
        charges:
          - {meter: calls, model: per_unit, unit_price: "0.02", free_units: 100, minimum: "5.00", maximum: "9.00"}
          - meter: tokens
            model: graduated
            tiers: [{up_to: 1000, unit_price: "0.002", flat_fee: "1"}, {up_to: null, unit_price: "0.001"}]
        minimum_spend: "50"
        maximum_spend: "200"
  - code: simple
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges:
          - {meter: calls, model: per_unit, unit_price: "0.10"}
          - {meter: tokens, model: per_unit, unit_price: "0.001"}
  - code: trialplan
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        trial_days: 14
        fixed_fees: [{code: platform, amount: "31"}]
        charges: [{meter: calls, model: per_unit, unit_price: "0.10"}]
        minimum_spend: "31"
  - code: yen
    currency: JPY
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, amount: "5000"}]
        charges: [{meter: calls, model: per_unit, unit_price: "0.35"}]
  - code: dinar
    currency: KWD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, amount: "10.5"}]
        charges: [{meter: calls, model: per_unit, unit_price: "0.0125"}]
  - code: volpack
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges:
          - meter: gpu
            model: volume
            tiers:
              - {up_to: 100, unit_price: "1.00", flat_fee: "5"}
              - {up_to: 1000, unit_price: "0.50", flat_fee: "10"}
              - {up_to: null, unit_price: "0.25"}
          - {meter: spend, model: percentage, rate: "2.5"}
          - {meter: calls, model: package, package_size: 1000, package_price: "0.10"}
  - code: quarterly
    currency: USD
    interval: quarter
    versions:
      - {version: 1, effective_from: 2026-01-01, charges: [{meter: calls, model: per_unit, unit_price: "0.01"}]}
  - code: dropmax  # version 2 drops version 1's maximum and maximum_spend
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges: [{meter: calls, model: per_unit, unit_price: "1.00", maximum: "5.00"}]
        maximum_spend: "3.00"
      - version: 2
        effective_from: 2026-10-16
        charges: [{meter: calls, model: per_unit, unit_price: "1.00"}]
  - code: minplan
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges: [{meter: calls, model: per_unit, unit_price: "0.01", minimum: "5.00"}]
        maximum_spend: "2.00"

customers:
  - {id: c_unpinned, currency: USD, tax_rate: "0.20"}
  - {id: c_pinned, currency: USD}
  - {id: c_override, currency: USD}
  - {id: c_disc3, currency: USD}
  - {id: c_disc4, currency: USD}
  - {id: c_trial, currency: USD}
  - {id: c_yen, currency: JPY, timezone: Asia/Tokyo, tax_rate: "0.10"}
  - {id: c_kwd, currency: KWD}
  - {id: c_vol, currency: USD}
  - {id: c_quarter, currency: USD}
  - {id: c_anniv, currency: USD}
  - {id: c_end, currency: USD}
  - {id: c_min, currency: USD}
  - {id: c_dropmax, currency: USD}
  - {id: c_nobill, currency: USD, billable: false}

subscriptions:
  - {id: s_unpinned, customer_id: c_unpinned, plan: basic, start_date: 2026-01-01}
  - id: s_pinned
    customer_id: c_pinned
    plan: basic
    start_date: 2026-01-01
    pin_version: true
    discounts: [{code: loyal, percent_off: "10", applies_to: all}]
  - id: s_override
    customer_id: c_override
    plan: simple
    start_date: 2026-01-01
    price_overrides:
      - {meter: calls, model: per_unit, unit_price: "0.05", effective_from: 2026-10-11, effective_to: 2026-10-21}
  - id: s_disc3
    customer_id: c_disc3
    plan: simple
    start_date: 2026-08-15
    discounts: [{code: launch, percent_off: "20", applies_to: usage, periods: 3}]
  - id: s_disc4
    customer_id: c_disc4
    plan: simple
    start_date: 2026-07-15
    discounts: [{code: launch, percent_off: "20", applies_to: usage, periods: 3}]
  - {id: s_trial, customer_id: c_trial, plan: trialplan, start_date: 2026-10-10}
  - {id: s_yen, customer_id: c_yen, plan: yen, start_date: 2026-04-01}
  - {id: s_kwd, customer_id: c_kwd, plan: dinar, start_date: 2026-04-01}
  - {id: s_vol, customer_id: c_vol, plan: volpack, start_date: 2026-01-01}
  - {id: s_quarter, customer_id: c_quarter, plan: quarterly, start_date: 2026-01-01}
  - {id: s_anniv, customer_id: c_anniv, plan: simple, start_date: 2026-03-15, billing_anchor: anniversary}
  - {id: s_end, customer_id: c_end, plan: simple, start_date: 2026-01-01, end_date: 2026-10-20}
  - {id: s_min, customer_id: c_min, plan: minplan, start_date: 2026-10-17}
  - {id: s_dropmax, customer_id: c_dropmax, plan: dropmax, start_date: 2026-01-01}
  - {id: s_nobill, customer_id: c_nobill, plan: simple, start_date: 2026-01-01}
"""


def _many(customer, meter, at, count, group=None):
    return [use(customer, meter, at, 1, group)] * count


USAGE = [
    *_many("c_unpinned", "calls", "2026-10-05T12:00:00Z", 300),
    *_many("c_unpinned", "calls", "2026-10-20T12:00:00Z", 500),
    use("c_unpinned", "tokens", "2026-10-05T12:00:00Z", 1500, {"model": "large"}),
    use("c_unpinned", "tokens", "2026-10-20T12:00:00Z", 200, {"model": "small"}),
    use("c_pinned", "calls", "2026-10-10T00:00:00Z", 800),
    *_many("c_override", "calls", "2026-10-05T00:00:00Z", 10),
    *_many("c_override", "calls", "2026-10-15T00:00:00Z", 10),
    *_many("c_override", "calls", "2026-10-25T00:00:00Z", 10),
    use("c_disc3", "calls", "2026-10-03T00:00:00Z", 100),
    use("c_disc4", "calls", "2026-10-03T00:00:00Z", 100),
    use("c_trial", "calls", "2026-10-12T00:00:00Z", 50),
    use("c_trial", "calls", "2026-10-26T00:00:00Z", 30),
    # Tokyo: the October period is [2026-09-30T15:00Z, 2026-10-31T15:00Z)
    use("c_yen", "calls", "2026-09-30T14:59:59Z", 1),
    use("c_yen", "calls", "2026-09-30T15:00:00Z", 1),
    use("c_yen", "calls", "2026-10-15T00:00:00Z", 10),
    use("c_yen", "calls", "2026-10-31T15:00:00Z", 1),
    use("c_kwd", "calls", "2026-10-15T00:00:00Z", 1145),
    use("c_vol", "gpu", "2026-10-15T00:00:00Z", 150),
    use("c_vol", "spend", "2026-10-15T00:00:00Z", "1000.40"),
    use("c_vol", "calls", "2026-10-15T00:00:00Z", 2500),
    use("c_anniv", "calls", "2026-09-20T00:00:00Z", 10),
    use("c_anniv", "calls", "2026-10-20T00:00:00Z", 10),
    use("c_end", "calls", "2026-10-05T00:00:00Z", 10),
    use("c_end", "calls", "2026-10-25T00:00:00Z", 10),
    use("c_min", "calls", "2026-10-20T00:00:00Z", 100),
    use("c_nobill", "calls", "2026-10-20T00:00:00Z", 100),
    use("c_dropmax", "calls", "2026-10-20T00:00:00Z", 8),
]
ADJUSTMENTS = [
    ("2026-10", "s_pinned", "adj_1", "calls", None, "API calls (late, 2026-09)")
    + ("2026-09-01", "2026-10-01", Decimal("123"), Decimal("1.23")),
    # a quarterly subscription has no October invoice: the adjustment gets one of its own
    ("2026-10", "s_quarter", "adj_2", "calls", None, "API calls (late, 2026-09)")
    + ("2026-07-01", "2026-10-01", Decimal("200"), Decimal("2.00")),
]


@pytest.fixture(scope="module")
def closes(tmp_path_factory):
    """October closed twice, then November after s_unpinned got an end date."""
    folder = tmp_path_factory.mktemp("rating_close")
    project = RatingProject(folder)
    catalog = catalog_from_text(folder / "v1", CATALOG)
    first = project.close(catalog, "2026-10", USAGE, ADJUSTMENTS, command="build")
    again = project.close(catalog, "2026-10", USAGE, ADJUSTMENTS)
    changed = CATALOG.replace(
        "{id: s_unpinned, customer_id: c_unpinned, plan: basic, start_date: 2026-01-01}",
        "{id: s_unpinned, customer_id: c_unpinned, plan: basic, start_date: 2026-01-01, end_date: 2026-11-15}",
    )
    november = project.close(catalog_from_text(folder / "v2", changed), "2026-11", USAGE)
    with project.connect() as con:
        october_after = con.execute(
            "SELECT count(*) FROM marts.fct_invoices WHERE close_month = '2026-10'"
        ).fetchone()[0]
    no_subscriptions = catalog_from_text(folder / "v3", CATALOG.split("subscriptions:")[0])
    emptied = project.close(no_subscriptions, "2026-10")
    return {
        "oct": first,
        "oct_again": again,
        "nov": november,
        "oct_rows_after_nov": october_after,
        "oct_emptied": emptied,
    }


@pytest.fixture(scope="module")
def oct_doc(closes):
    return closes["oct"]


def amounts(inv: dict) -> tuple:
    keys = ("subtotal", "discount_total", "tax_total", "total", "amount_due")
    return tuple(inv[k] for k in keys)


def test_rerunning_a_close_gives_byte_identical_json(closes):
    assert json.dumps(closes["oct"], indent=2) == json.dumps(closes["oct_again"], indent=2)


def test_another_month_leaves_october_alone(closes):
    assert closes["oct_rows_after_nov"] == len(closes["oct"]["invoices"])


def test_a_rerun_replaces_the_month_even_when_nothing_is_left(closes):
    assert closes["oct_emptied"] == {"period": "2026-10", "invoices": []}


def test_who_gets_an_invoice(oct_doc):
    billed = sorted(i["subscription_id"] for i in oct_doc["invoices"])
    assert "s_nobill" not in billed  # billable: false
    assert len(billed) == 14 and len(set(billed)) == 14


def test_adjustments_without_an_invoice_get_one_of_their_own(oct_doc):
    inv = invoice(oct_doc, "s_quarter")  # its quarter ends in December
    assert [(line["kind"], line["line_id"], line["amount"]) for line in inv["lines"]] == [
        ("adjustment", "adj_2", "2.00")
    ]
    assert (inv["period_start"], inv["period_end"], inv["total"]) == (
        "2026-10-01",
        "2026-11-01",
        "2.00",
    )


def test_unpinned_version_change_min_max_and_commitment(oct_doc):
    inv = invoice(oct_doc, "s_unpinned")
    calls = lines(inv, "usage", "calls")
    assert [
        (c["period_start"], c["quantity"], c["billable_quantity"], c["amount"]) for c in calls
    ] == [
        ("2026-10-01", "300", "200", "2.00"),  # version 1: 0.01
        ("2026-10-16", "500", "400", "8.00"),  # version 2: 0.02, full free units again
    ]
    assert total(inv, "minimum_true_up") == 0  # 5.00 x 15/31 + 5.00 x 16/31 = 5.00 < 10.00
    assert [line["amount"] for line in lines(inv, "maximum_cap", "calls")] == ["-1.00"]  # v2's max
    tokens = lines(inv, "usage", "tokens")
    assert [(t["group"], t["amount"]) for t in tokens] == [
        ({"model": "large"}, "3.50"),
        ({"model": "small"}, "1.40"),
    ]
    assert tokens[0]["description"] == "LLM tokens (large)"
    assert [t["tier"] for t in tokens[0]["tiers"]] == [1, 2]
    assert tokens[0]["tiers"][1] == {
        "tier": 2,
        "from": "1000",
        "up_to": None,
        "quantity": "500",
        "unit_price": "0.001",
        "flat_fee": "0",
        "amount": "0.50",
    }
    assert total(inv, "commitment_true_up") == Decimal("36.10")  # 50 - 13.90
    assert [(f["fee_code"], f["period_start"], f["amount"]) for f in lines(inv, "fixed_fee")] == [
        ("platform", "2026-11-01", "62.00"),  # in advance, November's version
        ("support", "2026-10-01", "9.30"),  # in arrears, 15/31 + 16/31 of 9.30
    ]
    assert amounts(inv) == ("121.30", "0.00", "24.26", "145.56", "145.56")


def test_a_version_without_a_maximum_lifts_the_one_before(oct_doc):
    """The maximum and maximum_spend are the last segment's version's: none there, no cap,
    though an earlier segment's version had one."""
    inv = invoice(oct_doc, "s_dropmax")
    assert [(c["period_start"], c["amount"]) for c in lines(inv, "usage", "calls")] == [
        ("2026-10-01", "0.00"),
        ("2026-10-16", "8.00"),
    ]
    assert not lines(inv, "maximum_cap") and not lines(inv, "spend_cap")
    assert inv["subtotal"] == "8.00"


def test_pinned_keeps_version_one_with_discount_and_adjustment(oct_doc):
    inv = invoice(oct_doc, "s_pinned")
    assert [c["amount"] for c in lines(inv, "usage", "calls")] == ["7.00"]
    zero_tokens = lines(inv, "usage", "tokens")
    assert [(t["group"], t["quantity"], t["amount"]) for t in zero_tokens] == [(None, "0", "1.00")]
    assert total(inv, "commitment_true_up") == Decimal("42.00")
    assert total(inv, "fixed_fee", "platform") == Decimal("30.00")
    # 10% of usage 50.00 and fees 39.30, not of the adjustment
    assert [(d["fee_code"], d["amount"]) for d in lines(inv, "discount")] == [("loyal", "-8.93")]
    assert [a["amount"] for a in lines(inv, "adjustment")] == ["1.23"]
    assert amounts(inv) == ("81.60", "8.93", "0.00", "81.60", "81.60")
    assert inv["lines"][-1]["kind"] == "discount"  # discounts come last


def test_price_override_for_part_of_the_month(oct_doc):
    inv = invoice(oct_doc, "s_override")
    calls = lines(inv, "usage", "calls")
    assert [(c["period_start"], c["period_end"], c["amount"]) for c in calls] == [
        ("2026-10-01", "2026-10-11", "1.00"),
        ("2026-10-11", "2026-10-21", "0.50"),
        ("2026-10-21", "2026-11-01", "1.00"),
    ]
    assert len(lines(inv, "usage", "tokens")) == 3  # every charge, every segment, zero or not
    assert inv["subtotal"] == "2.50"


def test_discount_counts_periods_from_the_one_containing_start_date(oct_doc):
    assert amounts(invoice(oct_doc, "s_disc3"))[:2] == ("8.00", "2.00")  # October is period 3
    assert amounts(invoice(oct_doc, "s_disc4"))[:2] == ("10.00", "0.00")  # period 4


def test_trial_usage_is_free_and_fees_and_minimums_skip_trial_days(oct_doc):
    inv = invoice(oct_doc, "s_trial")
    assert (inv["period_start"], inv["period_end"]) == ("2026-10-10", "2026-11-01")
    calls = lines(inv, "usage", "calls")
    assert [(c["period_start"], c["quantity"], c["amount"]) for c in calls] == [
        ("2026-10-10", "50", "0.00"),
        ("2026-10-24", "30", "3.00"),
    ]
    assert [(f["period_start"], f["amount"]) for f in lines(inv, "fixed_fee")] == [
        ("2026-10-24", "8.00"),  # the first fee: 8 paid days of 31
        ("2026-11-01", "31.00"),
    ]
    assert total(inv, "commitment_true_up") == Decimal("5.00")  # 31 x 8/31 - 3.00
    assert inv["subtotal"] == "47.00"


def test_yen_in_tokyo(oct_doc):
    inv = invoice(oct_doc, "s_yen")
    assert lines(inv, "usage", "calls")[0]["quantity"] == "11"  # JST midnight edges
    assert lines(inv, "usage", "calls")[0]["amount"] == "4"  # 3.85 half-up to whole yen
    assert amounts(inv) == ("5004", "0", "500", "5504", "5504")


def test_dinar_has_three_minor_digits(oct_doc):
    inv = invoice(oct_doc, "s_kwd")
    assert lines(inv, "usage", "calls")[0]["amount"] == "14.313"  # 14.3125 half-up
    assert total(inv, "fixed_fee") == Decimal("10.500")
    assert lines(inv, "fixed_fee")[0]["amount"] == "10.500"
    assert amounts(inv) == ("24.813", "0.000", "0.000", "24.813", "24.813")


def test_volume_percentage_and_package(oct_doc):
    inv = invoice(oct_doc, "s_vol")
    assert lines(inv, "usage", "gpu")[0]["amount"] == "85.00"  # 150 x 0.50 + 10
    assert lines(inv, "usage", "gpu")[0]["tiers"][0]["tier"] == 2
    assert lines(inv, "usage", "spend")[0]["amount"] == "25.01"  # 2.5% of 1000.40
    assert lines(inv, "usage", "calls")[0]["amount"] == "0.30"  # 3 packages
    assert inv["subtotal"] == "110.31"


def test_anniversary_and_end_date_cut_the_period(oct_doc):
    anniv = invoice(oct_doc, "s_anniv")
    assert (anniv["period_start"], anniv["period_end"], anniv["subtotal"]) == (
        "2026-09-15",
        "2026-10-15",
        "1.00",
    )
    ended = invoice(oct_doc, "s_end")
    assert (ended["period_start"], ended["period_end"], ended["subtotal"]) == (
        "2026-10-01",
        "2026-10-20",
        "1.00",
    )


def test_prorated_charge_minimum_then_spend_cap(oct_doc):
    inv = invoice(oct_doc, "s_min")
    assert [line["amount"] for line in lines(inv, "minimum_true_up", "calls")] == ["1.42"]
    assert [line["amount"] for line in lines(inv, "spend_cap")] == ["-0.42"]
    assert inv["subtotal"] == "2.00"


def test_every_invoice_adds_up(oct_doc):
    for inv in oct_doc["invoices"]:
        lines_sum = sum(Decimal(line["amount"]) for line in inv["lines"])
        assert Decimal(inv["subtotal"]) == lines_sum
        assert Decimal(inv["total"]) == Decimal(inv["subtotal"]) + Decimal(inv["tax_total"])
        assert len({line["line_id"] for line in inv["lines"]}) == len(inv["lines"])


def test_end_date_added_later_credits_the_unused_in_advance_fee(closes):
    inv = invoice(closes["nov"], "s_unpinned")
    assert (inv["period_start"], inv["period_end"]) == ("2026-11-01", "2026-11-15")
    # October invoiced all of November (62.00); 14 of 30 days are due now: 28.93
    assert [f["amount"] for f in lines(inv, "fixed_fee_credit", "platform")] == ["-33.07"]
    assert [f["amount"] for f in lines(inv, "fixed_fee", "support")] == ["4.34"]
    assert not lines(inv, "fixed_fee", "platform")  # no December: the subscription has ended
    assert total(inv, "minimum_true_up") == Decimal("2.33")
    assert total(inv, "commitment_true_up") == Decimal("20.00")
    assert amounts(inv) == ("-5.40", "0.00", "-1.08", "-6.48", "-6.48")
