"""Prepaid credits in the catalog (SPEC 7): credit grants, plan grants, credit prices and
auto top-ups load into typed tables; each mistake is an error with its file and path."""

from __future__ import annotations

import textwrap
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from orchestration.catalog import CatalogError, load_catalog
from orchestration.catalog.tables.billing import SCHEMA, TABLES, billing_rows, write_billing_tables

BASE = """
settings: {default_currency: USD}
meters:
  - {code: calls, event_name: api.request, aggregation: count}
  - {code: bytes, event_name: api.request, aggregation: sum, expression: size}
plans:
  - code: pro
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, amount: "10.00"}]
        charges:
          - {meter: calls, model: per_unit, unit_price: "1.50"}
          - meter: bytes
            model: graduated
            tiers: [{up_to: 100, unit_price: "0.1"}, {up_to: null, unit_price: "0.05"}]
customers:
  - {id: acme, currency: USD, tax_rate: "0.20"}
  - {id: acme_eu, parent_id: acme}
subscriptions:
  - id: s1
    customer_id: acme
    plan: pro
    start_date: 2026-01-01
    discounts: [{code: launch, percent_off: 10, periods: 2}]
"""

CREDITS = """
credit_grants:
  - id: g_welcome
    customer_id: acme
    kind: promotional
    amount: "500.00"
    granted_on: 2026-10-01
    expires_on: 2027-01-01
  - id: g_paid
    customer_id: acme_eu
    kind: paid
    amount: "1000"
    granted_on: 2026-10-15
    priority: 5
    currency: USD
  - {id: g_paid_usage, customer_id: acme, kind: paid, amount: "20", granted_on: 2026-11-01,
     applies_to: usage}
"""

WITH_CREDITS = (
    BASE.replace(
        'unit_price: "1.50"}',
        'unit_price: "1.50", credit_price: "1.00"}',
    )
    .replace(
        "        charges:\n",
        "        credit_grants:\n"
        "          - {code: trial_credits, kind: promotional, amount: '500.00', every: start,\n"
        "             expires_after_days: 30}\n"
        "          - {code: monthly, amount: '100.00', every: period, rollover: {max: '50.00'},\n"
        "             priority: 3, applies_to: all}\n"
        "          - {code: bought, kind: paid, amount: '7', every: period}\n"
        "        charges:\n",
    )
    .replace(
        "    discounts: [{code: launch, percent_off: 10, periods: 2}]\n",
        "    discounts: [{code: launch, percent_off: 10, periods: 2}]\n"
        '    auto_top_up: {below: "50.00", amount: "500.00"}\n',
    )
    + CREDITS
)


def write(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")


def load(tmp_path: Path, text: str):
    write(tmp_path / "catalog", "a.yaml", text)
    return load_catalog(tmp_path / "catalog")


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


D = Decimal


def test_the_fixture_really_adds_every_new_field():
    assert WITH_CREDITS.count("credit_grants:") == 2
    assert "credit_price" in WITH_CREDITS and "auto_top_up" in WITH_CREDITS


def test_a_catalog_with_credits_loads(tmp_path):
    catalog = load(tmp_path, WITH_CREDITS)
    welcome, paid, paid_usage = catalog.credit_grants
    assert (welcome.kind, welcome.amount, welcome.priority) == ("promotional", D("500.00"), 10)
    assert welcome.applies_to is None and welcome.effective_applies_to == "usage"
    assert paid.effective_applies_to == "all" and paid.currency == "USD"
    assert paid_usage.effective_applies_to == "usage"
    version = catalog.plans[0].versions[0]
    trial, monthly, bought = version.credit_grants
    assert (trial.kind, trial.every, trial.expires_after_days) == ("promotional", "start", 30)
    assert trial.effective_applies_to == "usage"
    assert monthly.rollover is not None and monthly.rollover.max == D("50.00")
    assert monthly.effective_applies_to == "all" and bought.effective_applies_to == "all"
    assert version.charges[0].credit_price == D("1.00")
    top_up = catalog.subscriptions[0].auto_top_up
    assert top_up is not None and (top_up.below, top_up.amount) == (D("50.00"), D("500.00"))


def test_credit_rows(tmp_path):
    rows = billing_rows(load(tmp_path, WITH_CREDITS))
    assert rows["credit_grants"] == [
        ("g_welcome", "acme", "acme", "promotional", D("500.00"), date(2026, 10, 1))
        + (date(2027, 1, 1), 10, "usage", "USD", 2),
        # a sub-account's grant fills its parent's wallet
        ("g_paid", "acme", "acme_eu", "paid", D("1000"), date(2026, 10, 15))
        + (None, 5, "all", "USD", 2),
        ("g_paid_usage", "acme", "acme", "paid", D("20"), date(2026, 11, 1))
        + (None, 10, "usage", "USD", 2),
    ]
    assert rows["plan_credit_grants"] == [
        ("pro", 1, 1, "trial_credits", "promotional", D("500.00"), "start", 30, None, 10, "usage"),
        ("pro", 1, 2, "monthly", "promotional", D("100.00"), "period", None, D("50.00"), 3, "all"),
        ("pro", 1, 3, "bought", "paid", D("7"), "period", None, None, 10, "all"),
    ]
    assert rows["auto_top_ups"] == [("s1", D("50.00"), D("500.00"))]
    assert [r[-1] for r in rows["charges"]] == [D("1.00"), None]


def test_credit_tables_are_written_typed(tmp_path):
    catalog = load(tmp_path, WITH_CREDITS)
    con = duckdb.connect()
    try:
        write_billing_tables(con, catalog)
        for name in ("credit_grants", "plan_credit_grants", "auto_top_ups", "charges"):
            described = con.execute(f"DESCRIBE {SCHEMA}.{name}").fetchall()
            expected = [(n, t.replace(" ", "")) for n, t in TABLES[name]]
            assert [(r[0], r[1]) for r in described] == expected
        assert con.execute(
            f"SELECT grant_id, customer_id, amount, expires_on FROM {SCHEMA}.credit_grants"
            " ORDER BY grant_id"
        ).fetchall() == [
            ("g_paid", "acme", D("1000"), None),
            ("g_paid_usage", "acme", D("20"), None),
            ("g_welcome", "acme", D("500"), date(2027, 1, 1)),
        ]
        assert con.execute(
            f"SELECT meter_code, credit_price FROM {SCHEMA}.charges ORDER BY charge_no"
        ).fetchall() == [("calls", D("1")), ("bytes", None)]
    finally:
        con.close()


def test_charges_end_with_credit_price():
    assert TABLES["charges"][-2:] == [
        ("maximum", "DECIMAL(38, 12)"),
        ("credit_price", "DECIMAL(38, 12)"),
    ]


def test_without_credits_the_rows_are_unchanged(tmp_path):
    """The rows the tables held before prepaid credits, plus a NULL credit_price."""
    rows = billing_rows(load(tmp_path, BASE))
    assert rows["settings"] == [("MB", 3, "USD")]
    assert rows["plans"] == [("pro", "pro", "USD", 2, "month")]
    assert rows["plan_versions"] == [("pro", 1, date(2026, 1, 1), 0, None, None)]
    assert rows["charges"] == [
        ("pro", 1, 1, "calls", "calls", "calls", "per_unit", D("1.50"), None, None, None)
        + (D(0), None, None, None),
        ("pro", 1, 2, "bytes", "bytes", "bytes", "graduated", None, None, None, None)
        + (D(0), None, None, None),
    ]
    assert rows["tiers"] == [
        ("pro", 1, "bytes", 1, D(0), D(100), D("0.1"), D(0)),
        ("pro", 1, "bytes", 2, D(100), None, D("0.05"), D(0)),
    ]
    assert rows["fixed_fees"] == [("pro", 1, 1, "platform", "platform", D("10.00"), "in_advance")]
    assert rows["subscriptions"] == [
        ("s1", "acme", "pro", date(2026, 1, 1), None, "calendar", False, None, "USD", 2)
        + ("UTC", D("0.20"), True)
    ]
    assert rows["discounts"] == [("s1", 1, "launch", D(10), "all", 2)]
    assert rows["subscription_quantities"] == rows["price_overrides"] == []
    assert rows["credit_grants"] == rows["plan_credit_grants"] == rows["auto_top_ups"] == []


# --- mistakes, each with its file and path -----------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "path", "says"),
    [
        (
            "    customer_id: acme\n    kind: promotional",
            "    customer_id: nobody\n    kind: promotional",
            "credit_grants[g_welcome].customer_id",
            "unknown customer 'nobody'",
        ),
        (
            'amount: "1000"',
            'amount: "0"',
            "credit_grants[g_paid].amount",
            "greater than 0",
        ),
        (
            'amount: "1000"',
            'amount: "-5"',
            "credit_grants[g_paid].amount",
            "greater than 0",
        ),
        (
            "    priority: 5\n    currency: USD\n",
            "    priority: 5\n    currency: EUR\n",
            "credit_grants[g_paid].currency",
            "the grant is in EUR but customer 'acme_eu' (billed to its parent 'acme') pays in USD",
        ),
        (
            "expires_on: 2027-01-01",
            "expires_on: 2026-09-01",
            "credit_grants[g_welcome].expires_on",
            "expires_on 2026-09-01 is not after granted_on 2026-10-01",
        ),
        (
            "expires_on: 2027-01-01",
            "expires_on: 2026-10-01",
            "credit_grants[g_welcome].expires_on",
            "expires_on 2026-10-01 is not after granted_on 2026-10-01",
        ),
        (
            "    kind: promotional\n",
            "    kind: free\n",
            "credit_grants[g_welcome].kind",
            "'promotional' or 'paid'",
        ),
        (
            "- {id: g_paid_usage,",
            "- {id: g_welcome,",
            "credit_grants[g_welcome].id",
            "'g_welcome' is defined twice (first at catalog/a.yaml:",
        ),
        (
            'credit_price: "1.00"',
            'credit_price: "0"',
            "plans[pro].versions[0].charges[0].credit_price",
            "greater than 0",
        ),
        (
            "model: graduated\n",
            "model: graduated\n            credit_price: '1'\n",
            "plans[pro].versions[0].charges[1].credit_price",
            "credit_price is only for per_unit charges; this charge is graduated",
        ),
        (
            "every: period, rollover",
            "every: period, expires_after_days: 30, rollover",
            "plans[pro].versions[0].credit_grants[1].expires_after_days",
            "expires_after_days is only for every: start",
        ),
        (
            "expires_after_days: 30}",
            "expires_after_days: 30, rollover: {max: 1}}",
            "plans[pro].versions[0].credit_grants[0].rollover",
            "rollover is only for every: period",
        ),
        (
            "expires_after_days: 30}",
            "expires_after_days: 0}",
            "plans[pro].versions[0].credit_grants[0].expires_after_days",
            "greater than or equal to 1",
        ),
        (
            "rollover: {max: '50.00'}",
            "rollover: {max: '-1'}",
            "plans[pro].versions[0].credit_grants[1].rollover.max",
            "greater than or equal to 0",
        ),
        (
            "{code: bought,",
            "{code: monthly,",
            "plans[pro].versions[0].credit_grants[2].code",
            "credit grant code 'monthly' appears twice in this version (first at catalog/a.yaml:",
        ),
        (
            "priority: 3,",
            "priority: -1,",
            "plans[pro].versions[0].credit_grants[1].priority",
            "greater than or equal to 0",
        ),
        (
            'auto_top_up: {below: "50.00", amount: "500.00"}',
            'auto_top_up: {below: "50.00", amount: "0"}',
            "subscriptions[s1].auto_top_up.amount",
            "greater than 0",
        ),
        (
            'auto_top_up: {below: "50.00", amount: "500.00"}',
            'auto_top_up: {below: "-1", amount: "500.00"}',
            "subscriptions[s1].auto_top_up.below",
            "greater than or equal to 0",
        ),
        # credits are money: nothing finer than the currency's minor unit
        (
            'amount: "1000"',
            'amount: "10.005"',
            "credit_grants[g_paid].amount",
            "10.005 has more decimals than USD has (2)",
        ),
        (
            "rollover: {max: '50.00'}",
            "rollover: {max: '50.001'}",
            "plans[pro].versions[0].credit_grants[1].rollover.max",
            "more decimals than USD",
        ),
        (
            'auto_top_up: {below: "50.00", amount: "500.00"}',
            'auto_top_up: {below: "50.00", amount: "500.5001"}',
            "subscriptions[s1].auto_top_up.amount",
            "more decimals than USD",
        ),
    ],
)
def test_credit_mistakes_name_their_file_and_path(tmp_path, old, new, path, says):
    text = WITH_CREDITS.replace(old, new, 1)
    assert text != WITH_CREDITS
    issue = one(issues(tmp_path, text), path)
    assert says in issue.message, str(issue)


def test_a_grant_currency_other_than_its_customers(tmp_path):
    text = WITH_CREDITS.replace(
        "    granted_on: 2026-10-01\n", "    granted_on: 2026-10-01\n    currency: EUR\n", 1
    )
    issue = one(issues(tmp_path, text), "credit_grants[g_welcome].currency")
    assert issue.message == "the grant is in EUR but customer 'acme' pays in USD"


def test_a_grant_for_a_customer_in_the_default_currency(tmp_path):
    text = WITH_CREDITS.replace("{id: acme, currency: USD,", "{id: acme,")
    assert text != WITH_CREDITS
    catalog = load(tmp_path, text)  # g_paid's USD is the default currency of acme's wallet
    assert billing_rows(catalog)["credit_grants"][1][-2:] == ("USD", 2)


def test_credit_mistakes_are_listed_at_once(tmp_path):
    text = (
        WITH_CREDITS.replace('amount: "1000"', 'amount: "0"')
        .replace("expires_on: 2027-01-01", "expires_on: 2026-09-01")
        .replace("expires_after_days: 30}", "expires_after_days: 30, rollover: {max: 1}}")
    )
    found = {i.path for i in issues(tmp_path, text)}
    assert {
        "credit_grants[g_paid].amount",
        "credit_grants[g_welcome].expires_on",
        "plans[pro].versions[0].credit_grants[0].rollover",
    } <= found


def test_credit_grants_in_another_file(tmp_path):
    write(tmp_path / "catalog", "a.yaml", BASE)
    write(
        tmp_path / "catalog",
        "credits.yaml",
        CREDITS.replace("customer_id: acme\n", "customer_id: x\n"),
    )
    with pytest.raises(CatalogError) as info:
        load_catalog(tmp_path / "catalog")
    (issue,) = info.value.issues
    assert (issue.file, issue.path, issue.line) == (
        "catalog/credits.yaml",
        "credit_grants[g_welcome].customer_id",
        4,
    )
