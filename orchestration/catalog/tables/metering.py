"""The metering half of the catalog as tables: customers, meters, exclusions.

Besides the catalog fields, each meter and exclusion row carries the SQL compiled from it
(filters, expression, group_by). The dbt models read these rows at compile time
(`metering_catalog_rows`) and splice the compiled SQL in. That SQL is only ever produced
here, from the validated catalog, in the dialect of the warehouse's engine (dialects.py):
names and values go through the dialect's quoting, expressions through `expressions.to_sql`,
so no catalog text reaches SQL unchecked, and dbt never has to understand the catalog's YAML.

The compiled SQL reads the columns `properties` (JSON; its text on Spark), `customer_id`,
`event_name` and `source` of the row it is evaluated on.
"""

from __future__ import annotations

import json
from decimal import Decimal

import duckdb
import pyarrow as pa

from orchestration.catalog.expressions import is_single_property, parse_expression, to_sql
from orchestration.catalog.models import Catalog, Condition, Customer, Exclusion, Meter
from orchestration.catalog.tables.dialects import DUCKDB, DuckDBSql, SparkSql

Dialect = DuckDBSql | SparkSql

SCHEMA = "meterbook_catalog"
# Value-based aggregations: an event they would count must carry a numeric value (SPEC 3.1).
VALUE_AGGREGATIONS = ("sum", "max", "min", "latest", "time_weighted")
_DEC = pa.decimal128(38, 12)
_SCALE = Decimal("1E-12")


# --- operands ---------------------------------------------------------------------------


def property_text_sql(name: str, sql: Dialect = DUCKDB) -> str:
    """The text form of a property: strings as is, numbers and booleans as JSON writes them."""
    return sql.property_text(name)


def property_number_sql(name: str, sql: Dialect = DUCKDB) -> str:
    """The property as DECIMAL(38, 12), or NULL when missing or not numeric.

    Numeric means a JSON number or a string holding a finite decimal; booleans never are.
    A value beyond DECIMAL(38, 12) (10^26) is NULL too: it cannot be billed exactly.
    """
    return sql.property_number(name)


def _operand_text(cond: Condition, sql: Dialect) -> str:
    # field is one of a fixed set of column names (pydantic Literal), safe as an identifier
    return cond.field if cond.field else sql.property_text(cond.property)


def _operand_number(cond: Condition, sql: Dialect) -> str:
    if cond.field:
        return f"({sql.numeric_from_text(cond.field)})"
    return sql.property_number(cond.property)


def text_form(value: str | int | Decimal | bool) -> str:
    """How a catalog value compares with an event's text form (JSON writes true, 2.5)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


# --- conditions, meters, exclusions -----------------------------------------------------


def condition_sql(cond: Condition, sql: Dialect = DUCKDB) -> str:
    """A boolean that is never NULL. A missing property never matches eq or in; it does
    match ne and not_in (it is not equal to the value). Numeric ops need a numeric value."""
    if cond.op in ("gt", "gte", "lt", "lte"):
        symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[cond.op]
        bound = f"CAST({sql.literal(text_form(Decimal(str(cond.value))))} AS DECIMAL(38, 12))"
        return f"coalesce({_operand_number(cond, sql)} {symbol} {bound}, false)"
    text = _operand_text(cond, sql)
    if cond.op == "eq":
        return f"coalesce({text} = {sql.literal(text_form(cond.value))}, false)"
    if cond.op == "ne":
        return f"({text} IS DISTINCT FROM {sql.literal(text_form(cond.value))})"
    listed = ", ".join(sql.literal(text_form(v)) for v in cond.values)
    if cond.op == "in":
        return f"coalesce({text} IN ({listed}), false)"
    return f"({text} IS NULL OR {text} NOT IN ({listed}))"


def match_sql(meter: Meter, sql: Dialect = DUCKDB) -> str:
    """True when the meter counts the event: its event_name and every filter."""
    parts = [f"event_name = {sql.literal(meter.event_name)}"]
    parts += [condition_sql(f, sql) for f in meter.filters]
    return "(" + " AND ".join(parts) + ")"


def _number_sql(meter: Meter, sql: Dialect) -> str:
    """The meter's expression over the event's numeric properties.

    TRY turns an overflow (a product beyond DECIMAL(38, 12)) into NULL, so one bad event is
    rejected as bad_property instead of failing the whole close; a zero divisor gives NULL.
    """
    tree = parse_expression(meter.expression)
    return sql.try_(to_sql(tree, sql))


def value_sql(meter: Meter, sql: Dialect = DUCKDB) -> str | None:
    """The event's numeric value for a value-based meter; NULL when it cannot be computed."""
    if meter.aggregation not in VALUE_AGGREGATIONS:
        return None
    return _number_sql(meter, sql)


def text_value_sql(meter: Meter, sql: Dialect = DUCKDB) -> str | None:
    """count_unique: the text form of a single property, else the computed number as text."""
    if meter.aggregation != "count_unique":
        return None
    tree = parse_expression(meter.expression)
    if is_single_property(tree):
        return sql.property_text(tree.name)
    return sql.as_text(_number_sql(meter, sql))


def group_key_sql(meter: Meter, sql: Dialect = DUCKDB) -> str:
    """A JSON object of the group_by values (text forms, a missing one is null)."""
    return sql.json_object([(n, sql.property_text(n)) for n in meter.group_by])


def exclusion_sql(rule: Exclusion, sql: Dialect = DUCKDB) -> str:
    cond = condition_sql(rule, sql)
    if rule.event_name is None:
        return cond
    return f"(event_name = {sql.literal(rule.event_name)} AND {cond})"


# --- rows ---------------------------------------------------------------------------------


def _dec(value: Decimal | None) -> Decimal | None:
    return None if value is None else Decimal(value).quantize(_SCALE)


def _rounding(meter: Meter) -> str | None:
    """up | down | nearest; NULL keeps the fraction (no unit, no rounding, or 'none')."""
    rounding = meter.unit.rounding if meter.unit else None
    return None if rounding == "none" else rounding


def meter_row(seq: int, meter: Meter, sql: Dialect = DUCKDB) -> dict:
    return {
        "meter_seq": seq,
        "meter_code": meter.code,
        "meter_name": meter.display_name,
        "event_name": meter.event_name,
        "aggregation": meter.aggregation,
        "expression": meter.expression,
        "group_by": json.dumps(meter.group_by),
        "unit_divide_by": _dec(meter.unit.divide_by) if meter.unit else None,
        "unit_rounding": _rounding(meter),
        "match_sql": match_sql(meter, sql),
        "value_sql": value_sql(meter, sql),
        "text_value_sql": text_value_sql(meter, sql),
        "group_key_sql": group_key_sql(meter, sql),
    }


def exclusion_row(seq: int, rule: Exclusion, sql: Dialect = DUCKDB) -> dict:
    return {
        "exclusion_seq": seq,
        "reason": rule.reason,
        "event_name": rule.event_name,
        "property": rule.property,
        "field": rule.field,
        "op": rule.op,
        "operand": json.dumps(
            [text_form(v) for v in rule.values] if rule.values else text_form(rule.value)
        ),
        "condition_sql": exclusion_sql(rule, sql),
    }


def customer_row(catalog: Catalog, customer: Customer) -> dict:
    """Currency and timezone are the ones the customer's usage is billed in: a sub-account
    bills in its parent's (SPEC 3.3)."""
    payer = catalog.billing_customer(customer.id)
    return {
        "customer_id": customer.id,
        "customer_name": customer.name,
        "email": customer.email,
        "parent_id": customer.parent_id,
        "billing_customer_id": payer.id,
        "currency": catalog.currency_of(payer),
        "timezone": payer.timezone,
        "tax_rate": _dec(customer.tax_rate),
        "billable": customer.billable,
        "collection_method": customer.collection_method,
        "days_until_due": customer.days_until_due,
    }


_TYPES = {
    "str": pa.string(),
    "int": pa.int32(),
    "bool": pa.bool_(),
    "dec": _DEC,
    "json": pa.string(),
}


def _schema(columns: str) -> pa.Schema:
    """'name name:type ...' (type defaults to str) as an Arrow schema."""
    fields = [(c.partition(":")[0], _TYPES[c.partition(":")[2] or "str"]) for c in columns.split()]
    return pa.schema(fields)


SCHEMAS = {
    "customers": _schema(
        "customer_id customer_name email parent_id billing_customer_id currency timezone "
        "tax_rate:dec billable:bool collection_method days_until_due:int"
    ),
    "meters": _schema(
        "meter_seq:int meter_code meter_name event_name aggregation expression group_by:json "
        "unit_divide_by:dec unit_rounding match_sql value_sql text_value_sql group_key_sql"
    ),
    "exclusions": _schema(
        "exclusion_seq:int reason event_name property field op operand:json condition_sql"
    ),
}
_JSON_COLUMNS = {"meters": ("group_by",), "exclusions": ("operand",)}


def metering_rows(catalog: Catalog, sql: Dialect = DUCKDB) -> dict[str, list[dict]]:
    """Every row to write, computed before anything is written (nothing is half-applied),
    with the SQL compiled in the dialect of the warehouse they are written to."""
    return {
        "customers": [customer_row(catalog, c) for c in catalog.customers],
        "meters": [meter_row(i, m, sql) for i, m in enumerate(catalog.meters)],
        "exclusions": [exclusion_row(i, r, sql) for i, r in enumerate(catalog.exclusions)],
    }


def _write_table(con: duckdb.DuckDBPyConnection, name: str, rows: list[dict]) -> None:
    view = f"_metering_{name}_rows"
    con.register(view, pa.Table.from_pylist(rows, schema=SCHEMAS[name]))
    casts = ", ".join(
        f"CAST({col} AS JSON) AS {col}" if col in _JSON_COLUMNS.get(name, ()) else col
        for col in SCHEMAS[name].names
    )
    try:
        con.execute(f"CREATE OR REPLACE TABLE {SCHEMA}.{name} AS SELECT {casts} FROM {view}")
    finally:
        con.unregister(view)


def write_metering_tables(con: duckdb.DuckDBPyConnection, catalog: Catalog) -> None:
    """Rewrite meterbook_catalog.customers, meters and exclusions from `catalog`."""
    tables = metering_rows(catalog)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for name, rows in tables.items():
        _write_table(con, name, rows)
