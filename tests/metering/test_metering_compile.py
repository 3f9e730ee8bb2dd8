"""The SQL compiled from meters and exclusions, evaluated by DuckDB on one event at a time."""

from __future__ import annotations

import json
from decimal import Decimal

import duckdb
import pytest
from metering_fixtures import catalog_from_yaml, create_decimal_macros

from orchestration.catalog.models import Condition, Exclusion, Meter
from orchestration.catalog.tables import metering
from orchestration.catalog.tables.metering import (
    condition_sql,
    exclusion_sql,
    group_key_sql,
    match_sql,
    property_number_sql,
    text_value_sql,
    value_sql,
    write_metering_tables,
)


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    create_decimal_macros(con)
    yield con
    con.close()


def evaluate(con, sql: str, props: dict | str, **fields):
    """Evaluate compiled SQL on one event whose properties are `props` (dict or JSON text)."""
    row = {"customer_id": "acme", "event_name": "e", "source": None, **fields}
    text = props if isinstance(props, str) else json.dumps(props)
    return con.execute(
        f"SELECT {sql} FROM (SELECT CAST(? AS JSON) AS properties, ? AS customer_id, "
        "? AS event_name, ? AS source)",
        [text, row["customer_id"], row["event_name"], row["source"]],
    ).fetchone()[0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('{"v": 12}', Decimal("12")),
        ('{"v": -2.5}', Decimal("-2.5")),
        ('{"v": 1e3}', Decimal("1000")),
        ('{"v": "42"}', Decimal("42")),
        ('{"v": " 3.25 "}', Decimal("3.25")),
        ('{"v": "-.5"}', Decimal("-0.5")),
        ('{"v": "2E2"}', Decimal("200")),
        ('{"v": "lots"}', None),
        ('{"v": "NaN"}', None),
        ('{"v": "Infinity"}', None),
        ('{"v": "1,000"}', None),
        ('{"v": ""}', None),
        ('{"v": true}', None),
        ('{"v": false}', None),
        ('{"v": null}', None),
        ('{"other": 1}', None),
        ('{"v": "1e30"}', None),  # beyond DECIMAL(38, 12): cannot be billed exactly
    ],
)
def test_numeric_property_rule(con, raw, expected):
    assert evaluate(con, property_number_sql("v"), raw) == expected


def _cond(**kw) -> str:
    return condition_sql(Condition(**kw))


@pytest.mark.parametrize(
    ("cond", "props", "expected"),
    [
        ({"op": "eq", "value": "gold"}, {"tier": "gold"}, True),
        ({"op": "eq", "value": "gold"}, {"tier": "silver"}, False),
        ({"op": "eq", "value": "gold"}, {}, False),  # missing never matches eq
        ({"op": "eq", "value": 5}, {"tier": 5}, True),  # text forms: "5" = "5"
        ({"op": "eq", "value": 5}, {"tier": "5"}, True),
        ({"op": "eq", "value": True}, {"tier": True}, True),
        ({"op": "ne", "value": "gold"}, {"tier": "silver"}, True),
        ({"op": "ne", "value": "gold"}, {"tier": "gold"}, False),
        ({"op": "ne", "value": "gold"}, {}, True),
        ({"op": "in", "values": ["gold", "silver"]}, {"tier": "silver"}, True),
        ({"op": "in", "values": ["gold", "silver"]}, {"tier": "bronze"}, False),
        ({"op": "in", "values": ["gold", "silver"]}, {}, False),  # missing never matches in
        ({"op": "not_in", "values": ["gold", "silver"]}, {"tier": "bronze"}, True),
        ({"op": "not_in", "values": ["gold", "silver"]}, {"tier": "gold"}, False),
        ({"op": "not_in", "values": ["gold", "silver"]}, {}, True),
        ({"op": "gt", "value": 10}, {"tier": 10.5}, True),
        ({"op": "gt", "value": 10}, {"tier": 10}, False),
        ({"op": "gt", "value": 10}, {"tier": "11"}, True),  # numeric strings compare as numbers
        ({"op": "gt", "value": 9}, {"tier": "10"}, True),  # not as text ("10" < "9")
        ({"op": "gt", "value": 0}, {"tier": True}, False),  # booleans are never numeric
        ({"op": "gt", "value": 0}, {}, False),
        ({"op": "gte", "value": 10}, {"tier": 10}, True),
        ({"op": "gte", "value": 10}, {"tier": 9.99}, False),
        ({"op": "lt", "value": 10}, {"tier": 9.99}, True),
        ({"op": "lt", "value": 10}, {"tier": "abc"}, False),
        ({"op": "lte", "value": "10.5"}, {"tier": 10.5}, True),
        ({"op": "lte", "value": 10}, {"tier": 11}, False),
    ],
)
def test_condition_ops(con, cond, props, expected):
    assert evaluate(con, _cond(property="tier", **cond), props) is expected


def test_condition_on_event_field(con):
    sql = _cond(field="customer_id", op="in", values=["internal", "qa"])
    assert evaluate(con, sql, {}, customer_id="qa") is True
    assert evaluate(con, sql, {}, customer_id="acme") is False
    assert evaluate(con, _cond(field="source", op="eq", value="x"), {}, source=None) is False


def test_names_and_values_with_quotes_cannot_break_out(con):
    sql = _cond(property="it's\"x", op="eq", value="a'); DROP TABLE t; --")
    assert evaluate(con, sql, {"it's\"x": "a'); DROP TABLE t; --"}) is True
    assert evaluate(con, sql, {"it's\"x": "a"}) is False


def _meter(**kw) -> Meter:
    return Meter(code="m", event_name="e", **kw)


@pytest.mark.parametrize(
    ("expression", "props", "expected"),
    [
        (
            "input_tokens + output_tokens",
            {"input_tokens": 1200, "output_tokens": "310"},
            Decimal("1510"),
        ),
        (
            "(cpu_ms + io_ms) * cores / 1000",
            {"cpu_ms": 1500, "io_ms": 500, "cores": 2},
            Decimal("4"),
        ),
        (
            "duration_ms * gpu_count / 3600000",
            {"duration_ms": 1800000, "gpu_count": 1},
            Decimal("0.5"),
        ),
        ("a / 3", {"a": 1}, Decimal("0.333333333333")),
        ("a / 3", {"a": 2}, Decimal("0.666666666667")),  # half-up at 12 decimals
        ("-a + 2.5", {"a": 1}, Decimal("1.5")),
        ("a - b", {"a": 1}, None),  # a missing property: no value
        ("a * b", {"a": 1, "b": "x"}, None),
        ("a / b", {"a": 1, "b": 0}, None),  # division by zero: no value, not a failed run
        ("a * b", {"a": 10**13, "b": 10**13}, None),  # overflow: no value, not a failed run
    ],
)
def test_expression_values(con, expression, props, expected):
    meter = _meter(aggregation="sum", expression=expression)
    assert evaluate(con, value_sql(meter), props) == expected


def test_value_and_text_by_aggregation():
    assert value_sql(_meter(aggregation="count")) is None
    assert value_sql(_meter(aggregation="count_unique", expression="a")) is None
    assert text_value_sql(_meter(aggregation="sum", expression="a")) is None
    for aggregation in ("sum", "max", "min", "latest", "time_weighted"):
        assert value_sql(_meter(aggregation=aggregation, expression="a")) is not None


def test_count_unique_text(con):
    single = text_value_sql(_meter(aggregation="count_unique", expression="agent_id"))
    assert evaluate(con, single, {"agent_id": "u-1"}) == "u-1"
    assert evaluate(con, single, {"agent_id": 7}) == "7"
    assert evaluate(con, single, {}) is None
    computed = text_value_sql(_meter(aggregation="count_unique", expression="a + b"))
    assert Decimal(evaluate(con, computed, {"a": 1, "b": "2"})) == 3


def test_group_key(con):
    meter = _meter(aggregation="count", group_by=["model", "region"])
    key = evaluate(con, group_key_sql(meter), {"model": "large", "tier": 1})
    assert json.loads(key) == {"model": "large", "region": None}
    assert list(json.loads(key)) == ["model", "region"]  # group_by order
    assert evaluate(con, group_key_sql(_meter(aggregation="count")), {"model": "x"}) is None


def test_match_needs_event_name_and_every_filter(con):
    meter = _meter(
        aggregation="count",
        filters=[
            Condition(property="model", op="in", values=["large"]),
            Condition(property="env", op="ne", value="dev"),
        ],
    )
    sql = match_sql(meter)
    assert evaluate(con, sql, {"model": "large"}) is True
    assert evaluate(con, sql, {"model": "large", "env": "dev"}) is False
    assert evaluate(con, sql, {"model": "large"}, event_name="other") is False


def test_exclusion_limited_to_event_name(con):
    rule = Exclusion(reason="failed", property="status", op="eq", value="error", event_name="api")
    assert evaluate(con, exclusion_sql(rule), {"status": "error"}, event_name="api") is True
    assert evaluate(con, exclusion_sql(rule), {"status": "error"}, event_name="job") is False


CATALOG = """
settings: {default_currency: EUR}
exclusions:
  - {reason: sandbox, property: env, op: in, values: [sandbox, test]}
meters:
  - {code: calls, event_name: api.request, aggregation: count}
  - code: tokens
    event_name: llm.completion
    aggregation: sum
    expression: input_tokens + output_tokens
    filters: [{property: model, op: in, values: [large, small]}]
    group_by: [model]
    unit: {divide_by: 1000, rounding: up}
customers:
  - {id: acme, currency: USD, timezone: Europe/Paris, tax_rate: "0.2"}
  - {id: acme-eu, parent_id: acme, timezone: UTC, tax_rate: "0.1"}
  - {id: beta}
"""


def test_write_metering_tables(tmp_path):
    catalog = catalog_from_yaml(tmp_path, CATALOG)
    con = duckdb.connect()
    write_metering_tables(con, catalog)
    write_metering_tables(con, catalog)  # rewriting replaces, never appends
    customers = con.execute(
        "SELECT customer_id, billing_customer_id, currency, timezone, tax_rate "
        "FROM meterbook_catalog.customers ORDER BY customer_id"
    ).fetchall()
    assert customers == [
        ("acme", "acme", "USD", "Europe/Paris", Decimal("0.2")),
        ("acme-eu", "acme", "USD", "Europe/Paris", Decimal("0.1")),  # billed as its parent
        ("beta", "beta", "EUR", "UTC", Decimal("0")),
    ]
    meters = con.execute(
        "SELECT meter_seq, meter_code, aggregation, unit_divide_by, unit_rounding, group_by, "
        "value_sql IS NULL FROM meterbook_catalog.meters ORDER BY meter_seq"
    ).fetchall()
    assert meters == [
        (0, "calls", "count", None, None, "[]", True),
        (1, "tokens", "sum", Decimal(1000), "up", '["model"]', False),
    ]
    assert con.execute("SELECT reason, op FROM meterbook_catalog.exclusions").fetchall() == [
        ("sandbox", "in")
    ]


def test_nothing_written_when_a_row_cannot_be_built(tmp_path, monkeypatch):
    catalog = catalog_from_yaml(tmp_path, CATALOG)
    con = duckdb.connect()
    write_metering_tables(con, catalog)

    def broken(seq, rule, sql):
        raise ValueError("boom")

    monkeypatch.setattr(metering, "exclusion_row", broken)
    with pytest.raises(ValueError, match="boom"):
        write_metering_tables(con, catalog.model_copy(update={"meters": []}))
    assert con.execute("SELECT count(*) FROM meterbook_catalog.meters").fetchone()[0] == 2
