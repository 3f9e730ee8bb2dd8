"""Catalog mistakes that rating relies on being caught, each reported with file and path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestration.catalog import CatalogError, load_catalog

BASE = """
meters:
  - {code: calls, event_name: api.request, aggregation: count}
  - {code: tokens, event_name: llm.completion, aggregation: sum, expression: n}
plans:
  - code: pro
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, amount: "10"}]
        charges:
          - {meter: calls, model: per_unit, unit_price: "0.1"}
          - meter: tokens
            model: graduated
            tiers: [{up_to: 10, unit_price: 1}, {up_to: null, unit_price: 1}]
customers:
  - {id: acme, currency: USD}
subscriptions:
  - id: s1
    customer_id: acme
    plan: pro
    start_date: 2026-01-01
    end_date: 2027-01-01
"""


def issues(tmp_path: Path, text: str, extra: str | None = None) -> list:
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "a.yaml").write_text(textwrap.dedent(text))
    if extra is not None:
        (folder / "b.yaml").write_text(textwrap.dedent(extra))
    with pytest.raises(CatalogError) as info:
        load_catalog(folder)
    return info.value.issues


def one(found: list, path: str):
    matching = [i for i in found if i.path == path]
    assert matching, [str(i) for i in found]
    return matching[0]


def test_the_base_catalog_is_valid(tmp_path):
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "a.yaml").write_text(BASE)
    assert load_catalog(folder).subscriptions[0].id == "s1"


def test_charge_on_an_unknown_meter(tmp_path):
    found = issues(tmp_path, BASE.replace("{meter: calls,", "{meter: clals,"))
    issue = one(found, "plans[pro].versions[0].charges[0].meter")
    assert issue.file == "catalog/a.yaml" and "unknown meter 'clals'" in issue.message


def test_plan_currency_differs_from_the_customers(tmp_path):
    found = issues(tmp_path, BASE.replace("{id: acme, currency: USD}", "{id: acme, currency: EUR}"))
    issue = one(found, "subscriptions[s1].plan")
    assert "USD" in issue.message and "EUR" in issue.message


def test_default_currency_counts_for_customers_without_one(tmp_path):
    text = "settings: {default_currency: JPY}\n" + BASE.replace(
        "{id: acme, currency: USD}", "{id: acme}"
    )
    assert "JPY" in one(issues(tmp_path, text), "subscriptions[s1].plan").message


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ("[{up_to: 10, unit_price: 1}, {up_to: 5, unit_price: 1}, {up_to: null}]", "increase"),
        ("[{up_to: 10, unit_price: 1}, {up_to: 10, unit_price: 1}, {up_to: null}]", "overlapping"),
        ("[{up_to: 10, unit_price: 1}]", "open"),
        ("[]", "at least one"),
    ],
)
def test_unsorted_or_overlapping_tiers_point_at_the_tiers(tmp_path, tiers, message):
    text = BASE.replace("[{up_to: 10, unit_price: 1}, {up_to: null, unit_price: 1}]", tiers)
    issue = one(issues(tmp_path, text), "plans[pro].versions[0].charges[1].tiers")
    assert message in issue.message


def test_two_versions_with_the_same_date(tmp_path):
    text = BASE.replace(
        "        charges:\n          - {meter: calls",
        "        charges: []\n      - version: 2\n        effective_from: 2026-01-01\n"
        "        charges:\n          - {meter: calls",
    )
    issue = one(issues(tmp_path, text), "plans[pro].versions[1].effective_from")
    assert "appears twice" in issue.message and "versions[0]" in issue.message


def test_two_versions_with_the_same_number(tmp_path):
    text = BASE.replace(
        "        charges:\n          - {meter: calls",
        "        charges: []\n      - version: 1\n        effective_from: 2026-06-01\n"
        "        charges:\n          - {meter: calls",
    )
    assert "appears twice" in one(issues(tmp_path, text), "plans[pro].versions[1].version").message


def _with_overrides(overrides: str) -> str:
    return BASE.replace(
        "end_date: 2027-01-01", f"end_date: 2027-01-01\n    price_overrides: {overrides}"
    )


@pytest.mark.parametrize(
    ("overrides", "path", "message"),
    [
        (
            "[{meter: calls, model: per_unit, unit_price: 1, effective_from: 2025-12-01}]",
            "effective_from",
            "outside",
        ),
        (
            "[{meter: calls, model: per_unit, unit_price: 1, effective_to: 2027-02-01}]",
            "effective_to",
            "outside",
        ),
        ("[{meter: nope, model: per_unit, unit_price: 1}]", "meter", "unknown meter"),
    ],
)
def test_override_outside_the_subscription_or_on_an_unknown_meter(
    tmp_path, overrides, path, message
):
    issue = one(
        issues(tmp_path, _with_overrides(overrides)), f"subscriptions[s1].price_overrides[0].{path}"
    )
    assert message in issue.message


def test_override_of_a_meter_the_plan_does_not_charge(tmp_path):
    text = BASE.replace(
        "  - {code: tokens,",
        "  - {code: seats, event_name: s, aggregation: count}\n  - {code: tokens,",
    )
    text = text.replace(
        "end_date: 2027-01-01",
        "end_date: 2027-01-01\n    price_overrides: [{meter: seats, model: per_unit, unit_price: 1}]",
    )
    issue = one(issues(tmp_path, text), "subscriptions[s1].price_overrides[0].meter")
    assert "no charge on meter 'seats'" in issue.message


def test_overlapping_overrides_of_one_meter(tmp_path):
    overrides = (
        "[{meter: calls, model: per_unit, unit_price: 1, effective_from: 2026-03-01, effective_to: 2026-06-01},"
        " {meter: calls, model: per_unit, unit_price: 2, effective_from: 2026-05-01}]"
    )
    issue = one(
        issues(tmp_path, _with_overrides(overrides)),
        "subscriptions[s1].price_overrides[1].effective_from",
    )
    assert "overlaps price_overrides[0]" in issue.message


def test_back_to_back_overrides_are_fine(tmp_path):
    overrides = (
        "[{meter: calls, model: per_unit, unit_price: 1, effective_from: 2026-03-01, effective_to: 2026-06-01},"
        " {meter: calls, model: per_unit, unit_price: 2, effective_from: 2026-06-01}]"
    )
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "a.yaml").write_text(_with_overrides(overrides))
    assert len(load_catalog(folder).subscriptions[0].price_overrides) == 2


def test_prices_beyond_twelve_decimals_are_rejected(tmp_path):
    text = BASE.replace('unit_price: "0.1"', 'unit_price: "0.0000000000001"')
    issue = one(issues(tmp_path, text), "plans[pro].versions[0].charges[0].unit_price")
    assert "12 decimal places" in issue.message


def test_mistakes_in_a_second_file_name_that_file(tmp_path):
    extra = """
    subscriptions:
      - {id: s2, customer_id: acme, plan: pro, start_date: 2026-01-01, quantities: {seats: 2}}
    """
    issue = one(issues(tmp_path, BASE, extra), "subscriptions[s2].quantities.seats")
    assert issue.file == "catalog/b.yaml" and "no fixed fee 'seats'" in issue.message
