"""Issue 19, bug 10: values a close cannot bill are catalog errors, with file and path.

Currencies are active ISO 4217 codes, a tax rate is a fraction of 1, prices and amounts fit
the warehouse exactly, property names are non-empty without control characters, and no
string holds a NUL. Each mistake names its file and path; all of them are listed at once.
"""

from __future__ import annotations

import textwrap
from decimal import Decimal
from pathlib import Path

import pytest

from orchestration.catalog import CatalogError, load_catalog
from orchestration.catalog import currencies as money

BASE = """
settings: {default_currency: USD}
exclusions:
  - {reason: sandbox, property: env, op: eq, value: sandbox}
meters:
  - code: calls
    event_name: api.request
    aggregation: count
    filters: [{property: model, op: in, values: [large]}]
    group_by: [region]
  - {code: users, event_name: api.request, aggregation: count_unique, expression: user}
plans:
  - code: pro
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, amount: "10.00"}]
        charges:
          - {meter: calls, model: per_unit, unit_price: "0.1"}
customers:
  - {id: acme, currency: USD, tax_rate: "0.20"}
subscriptions:
  - {id: s1, customer_id: acme, plan: pro, start_date: 2026-01-01}
"""


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")


def issues(tmp_path: Path, text: str) -> list:
    write(tmp_path / "catalog", "a.yaml", text)
    with pytest.raises(CatalogError) as info:
        load_catalog(tmp_path / "catalog")
    return info.value.issues


def one(found: list, path: str):
    matching = [i for i in found if i.path == path]
    assert len(matching) == 1, [str(i) for i in found]
    assert matching[0].file == "catalog/a.yaml" and matching[0].line, str(matching[0])
    return matching[0]


def test_the_base_catalog_is_valid(tmp_path):
    write(tmp_path / "catalog", "a.yaml", BASE)
    assert load_catalog(tmp_path / "catalog").customers[0].tax_rate == Decimal("0.20")


# --- currencies ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("{id: acme, currency: USD,", "{id: acme, currency: QQQ,", "customers[acme].currency"),
        ("    currency: USD\n", "    currency: QQQ\n", "plans[pro].currency"),
        ("default_currency: USD", "default_currency: QQQ", "settings.default_currency"),
        ("{id: acme, currency: USD,", "{id: acme, currency: usd,", "customers[acme].currency"),
        ("{id: acme, currency: USD,", "{id: acme, currency: XXX,", "customers[acme].currency"),
        ("{id: acme, currency: USD,", "{id: acme, currency: HRK,", "customers[acme].currency"),
    ],
)
def test_unknown_currencies(tmp_path, old, new, path):
    issue = one(issues(tmp_path, BASE.replace(old, new)), path)
    assert "ISO 4217" in issue.message


@pytest.mark.parametrize("code", ["USD", "EUR", "JPY", "KWD", "CLF", "CHF", "XOF", "ZWG", "XCG"])
def test_active_currencies_are_accepted(tmp_path, code):
    text = BASE.replace("USD", code)
    write(tmp_path / "catalog", "a.yaml", text)
    assert load_catalog(tmp_path / "catalog").plans[0].currency == code


def test_one_table_of_iso_4217_exponents():
    assert len(money.ISO_4217_EXPONENTS) > 150
    assert {c: money.minor_exponent(c) for c in ("USD", "JPY", "KWD", "CLF", "ISK", "VND")} == {
        "USD": 2,
        "JPY": 0,
        "KWD": 3,
        "CLF": 4,
        "ISK": 0,
        "VND": 0,
    }
    assert money.is_currency("EUR") and not money.is_currency("QQQ")
    assert not money.is_currency("eur")
    assert all(len(c) == 3 and c.isupper() for c in money.ISO_4217_EXPONENTS)
    assert set(money.ISO_4217_EXPONENTS.values()) == {0, 2, 3, 4}


# --- tax rates and amounts ----------------------------------------------------------------


@pytest.mark.parametrize("rate", ['"5"', '"1.5"', "20", '"-0.1"'])
def test_tax_rate_is_a_fraction(tmp_path, rate):
    issue = one(
        issues(tmp_path, BASE.replace('tax_rate: "0.20"', f"tax_rate: {rate}")),
        "customers[acme].tax_rate",
    )
    assert "0.05" in issue.message or "greater than or equal to 0" in issue.message


def test_tax_rate_of_five_says_to_write_a_fraction(tmp_path):
    issue = one(
        issues(tmp_path, BASE.replace('tax_rate: "0.20"', 'tax_rate: "5"')),
        "customers[acme].tax_rate",
    )
    assert "fraction" in issue.message and "0.05" in issue.message


@pytest.mark.parametrize("rate", ['"0"', '"1"', '"0.0725"', "0.2"])
def test_tax_rate_bounds_are_inclusive(tmp_path, rate):
    write(tmp_path / "catalog", "a.yaml", BASE.replace('tax_rate: "0.20"', f"tax_rate: {rate}"))
    assert load_catalog(tmp_path / "catalog").customers[0].tax_rate <= 1


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ('amount: "10.00"', 'amount: "-10.00"', "plans[pro].versions[0].fixed_fees[0].amount"),
        ('amount: "10.00"', 'amount: "1e15"', "plans[pro].versions[0].fixed_fees[0].amount"),
        (
            'amount: "10.00"',
            'amount: "0.0000000000001"',
            "plans[pro].versions[0].fixed_fees[0].amount",
        ),
        ('amount: "10.00"', "amount: .nan", "plans[pro].versions[0].fixed_fees[0].amount"),
        ('unit_price: "0.1"', "unit_price: .inf", "plans[pro].versions[0].charges[0].unit_price"),
        (
            'model: per_unit, unit_price: "0.1"',
            'model: package, package_size: "0.0000000000001", package_price: "1"',
            "plans[pro].versions[0].charges[0].package_size",
        ),
        (
            'model: per_unit, unit_price: "0.1"',
            'model: package, package_size: "1e20", package_price: "1"',
            "plans[pro].versions[0].charges[0].package_size",
        ),
        (
            "aggregation: count\n",
            "aggregation: count\n    unit: {divide_by: 1e30}\n",
            "meters[calls].unit.divide_by",
        ),
        (
            "start_date: 2026-01-01}",
            'start_date: 2026-01-01, discounts: [{code: d, percent_off: "10.0000000000001"}]}',
            "subscriptions[s1].discounts[0].percent_off",
        ),
        (
            "{property: model, op: in, values: [large]}",
            "{property: size, op: gt, value: 1.0e+30}",
            "meters[calls].filters[0].value",
        ),
        (
            "{property: model, op: in, values: [large]}",
            '{property: size, op: gt, value: "0.0000000000001"}',
            "meters[calls].filters[0].value",
        ),
    ],
)
def test_amounts_outside_what_the_warehouse_holds(tmp_path, old, new, path):
    text = BASE.replace(old, new)
    assert text != BASE
    one(issues(tmp_path, text), path)


@pytest.mark.parametrize(
    "expression", ["user * 0.0000000000001", "user * 100000000000000000000000000"]
)
def test_expression_literals_must_fit(tmp_path, expression):
    text = BASE.replace("expression: user}", f"expression: {expression}}}")
    issue = one(issues(tmp_path, text), "meters[users].expression")
    assert "literal" in issue.message


# --- property names and NUL ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("property: env,", 'property: "",', "exclusions[0].property"),
        ("property: env,", 'property: "en\\tv",', "exclusions[0].property"),
        ("property: model,", 'property: "",', "meters[calls].filters[0].property"),
        ("property: model,", 'property: "mo\\x1bdel",', "meters[calls].filters[0].property"),
        ("group_by: [region]", 'group_by: [""]', "meters[calls].group_by[0]"),
        ("group_by: [region]", 'group_by: [region, "re\\ngion"]', "meters[calls].group_by[1]"),
        ("group_by: [region]", 'group_by: ["\\x85"]', "meters[calls].group_by[0]"),
    ],
)
def test_property_names_are_non_empty_without_control_characters(tmp_path, old, new, path):
    text = BASE.replace(old, new)
    assert text != BASE
    one(issues(tmp_path, text), path)


@pytest.mark.parametrize(
    ("old", "new", "path"),
    [
        ("property: env,", 'property: "e\\0nv",', "exclusions[0].property"),
        ("value: sandbox}", 'value: "sand\\0box"}', "exclusions[0].value"),
        ("values: [large]", 'values: [large, "lar\\0ge"]', "meters[calls].filters[0].values[1]"),
        ("reason: sandbox,", 'reason: "sand\\0box",', "exclusions[0].reason"),
        ("event_name: api.request\n", 'event_name: "api\\0request"\n', "meters[calls].event_name"),
        (
            "{id: acme, currency: USD,",
            '{id: acme, name: "Ac\\0me", currency: USD,',
            "customers[acme].name",
        ),
        (
            "{id: acme, currency: USD,",
            '{id: "ac\\0me", currency: USD,',
            "customers['ac\\x00me'].id",
        ),
        (
            "{code: platform,",
            '{code: platform, name: "Plat\\0form",',
            "plans[pro].versions[0].fixed_fees[0].name",
        ),
    ],
)
def test_a_nul_anywhere_is_an_error_with_its_path(tmp_path, old, new, path):
    text = BASE.replace(old, new)
    assert text != BASE
    issue = one(issues(tmp_path, text), path)
    assert "NUL" in issue.message


def test_a_nul_in_a_mapping_key_is_reported(tmp_path):
    text = BASE.replace(
        "start_date: 2026-01-01}", 'start_date: 2026-01-01, quantities: {"plat\\0form": 1}}'
    )
    found = issues(tmp_path, text)
    assert any(
        "NUL" in i.message and i.path.startswith("subscriptions[s1].quantities") for i in found
    ), [str(i) for i in found]
    assert all("\x00" not in str(i) for i in found)  # the report itself stays printable


def test_every_value_mistake_is_listed_at_once(tmp_path):
    text = (
        BASE.replace("{id: acme, currency: USD,", "{id: acme, currency: QQQ,")
        .replace('tax_rate: "0.20"', 'tax_rate: "5"')
        .replace("property: env,", 'property: "",')
        .replace("reason: sandbox,", 'reason: "sand\\0box",')
        .replace('amount: "10.00"', 'amount: "-1"')
    )
    found = {i.path for i in issues(tmp_path, text)}
    assert {
        "customers[acme].currency",
        "customers[acme].tax_rate",
        "exclusions[0].property",
        "exclusions[0].reason",
        "plans[pro].versions[0].fixed_fees[0].amount",
    } <= found


# --- the revenue journal's accounts (SPEC 8) -------------------------------------------------


def test_accounts_default_to_their_roles_and_may_be_renamed_or_shared(tmp_path):
    text = BASE.replace(
        "settings: {default_currency: USD}",
        "settings:\n  default_currency: USD\n  accounts:\n"
        '    receivable: "1200 Accounts receivable"\n'
        '    revenue_usage: "4000 Revenue"\n'
        '    revenue_fees: "4000 Revenue"\n',
    )
    write(tmp_path / "catalog", "a.yaml", text)
    accounts = load_catalog(tmp_path / "catalog").settings.accounts
    assert accounts.receivable == "1200 Accounts receivable"
    assert accounts.revenue_usage == accounts.revenue_fees == "4000 Revenue"
    assert accounts.deferred_revenue == "deferred_revenue"  # not named: the role's own name


@pytest.mark.parametrize(
    ("accounts", "path"),
    [
        ("{recievable: AR}", "settings.accounts.recievable"),
        ('{breakage: ""}', "settings.accounts.breakage"),
        ('{tax_payable: " 2200"}', "settings.accounts.tax_payable"),
    ],
)
def test_an_unknown_role_or_a_blank_account_name_is_an_error_with_its_path(
    tmp_path, accounts, path
):
    text = BASE.replace(
        "settings: {default_currency: USD}",
        f"settings: {{default_currency: USD, accounts: {accounts}}}",
    )
    one(issues(tmp_path, text), path)
