"""The meters' compiled SQL in Spark's dialect gives what DuckDB's gives, to the byte.

Every compiled expression (a meter's match, value, text value and group key; an exclusion's
condition) is evaluated on the same events by DuckDB, from the SQL meterbook has always
compiled, and by a PySpark session, from the Spark dialect (orchestration/catalog/tables/
dialects.py). Group keys and text forms reach the invoice JSON, so they are compared as text;
values as exact decimals. The events: every shared scenario's, as the DuckDB ingest stores
them; a set of awkward property values and names; and Hypothesis's.
"""

from __future__ import annotations

import json
import math
import shutil
import struct
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from pathlib import Path

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.catalog.loader import load_catalog
from orchestration.catalog.models import Condition, Exclusion, Meter
from orchestration.catalog.tables import metering as m
from orchestration.catalog.tables.dialects import dialect
from orchestration.ingest.ingest import run_ingest
from orchestration.sql import connect
from orchestration.workspace import DBT_PROJECT_DIR

SCENARIOS = Path(__file__).resolve().parents[3] / "shared" / "scenarios"
NOW = datetime(2026, 11, 6, tzinfo=UTC)  # after every scenario event (scenarios README)
COLUMNS = "n int, customer_id string, event_name string, source string, properties string"

# JSON texts of a property value: numbers in every layout JSON allows, strings that look like
# numbers (or like Java's form of one), escapes, and values that are not scalars
AWKWARD_VALUES = [
    "5", "5.0", "2.50", "-3", "0", "-0", "-0.0", "1e3", "1E-2", "1.5e+2", "0.1234567890125",
    "12345678901234567890123456", "123456789012345678901234567", "1e30", "-1e30", "1e7",
    "123456789.0", "1e15", "1e20", "1.5e20", "1e21", "1.5e22", "0.001", "1e-4", "0.0001234",
    "1e-6", "1e-7", "2e-7", "123e-9", "1.2345678e-5", "5e-324", "1.7976931348623157e308",
    "0.30000000000000004", "3.14159265358979323846", "1e2", "10e-1", "9007199254740993",
    '"5"', '" 7 "', '"\\t7\\n"', '"-.5"', '"1e3"', '"+4"', '"1.0E7"', '"1.0E30"', '"abc"',
    '""', '"NaN"', '"Infinity"', '"2.50"', "true", "false", "null", '{"a": 1}', "[1, 2]",
    '"caf\\u00e9"', '"tab\\there"', '"quote\\"d"', '"back\\\\slash"', '"a/b"', '"\\u2028"',
    '"\\u0001"', '"\\ud83d\\ude00"', "{}", "[]", '{"a": "x", "b": [true, null]}',
]  # fmt: skip
AWKWARD_NAMES = ["v", "it's.[x]", 'quote"d', "back\\slash", "ünï code", "a.b", "$", "*"]


def evaluate(duck, spark, events: list[tuple], exprs: list[tuple[str, str]]) -> tuple:
    """Rows of (n, each expression) from DuckDB and from Spark; `exprs` are (duckdb, spark)
    SQL pairs over the columns of `events` (n, customer_id, event_name, source, properties)."""
    duck.execute(
        "CREATE OR REPLACE TEMP TABLE events (n INTEGER, customer_id VARCHAR, "
        "event_name VARCHAR, source VARCHAR, properties JSON)"
    )
    duck.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", events)
    ours = duck.execute(
        "SELECT n, " + ", ".join(d for d, _ in exprs) + " FROM events ORDER BY n"
    ).fetchall()
    spark.createDataFrame(events, COLUMNS).createOrReplaceTempView("events")
    theirs = spark.sql(
        "SELECT n, " + ", ".join(s for _, s in exprs) + " FROM events ORDER BY n"
    ).collect()
    return [_plain(r) for r in ours], [_plain(r) for r in theirs]


def _plain(row) -> tuple:
    # a decimal compared with its scale (both engines give DECIMAL(38, 12)); text as text
    return tuple(str(v) if isinstance(v, Decimal) else v for v in row)


def assert_same(duck, spark, events, exprs, labels) -> None:
    ours, theirs = evaluate(duck, spark, events, exprs)
    differing = [
        (labels[i], events[n_row][4], a, b)
        for n_row, (row_a, row_b) in enumerate(zip(ours, theirs, strict=True))
        for i, (a, b) in enumerate(zip(row_a[1:], row_b[1:], strict=True))
        if a != b
    ]
    assert not differing, "\n".join(
        f"{what}: properties {props}: DuckDB {a!r}, Spark {b!r}"
        for what, props, a, b in differing[:20]
    )


def both(build, *args) -> tuple[str, str]:
    """One compiled expression in both dialects: build(*args, dialect)."""
    return build(*args, dialect("duckdb")), build(*args, dialect("spark"))


def property_forms(name: str) -> tuple[list, list]:
    """What metering reads from one property: its text, its number, a group key, a count
    of distinct values and comparisons of its text form."""
    keyed = Meter(code="k", event_name="e", aggregation="count", group_by=[name, "missing"])
    eq = Condition(property=name, op="eq", value="10000000.0")
    gt = Condition(property=name, op="gt", value="2.5")
    # an expression names identifiers only: other names are read by group keys and filters
    unique = (
        both(m.text_value_sql, Meter(code="u", event_name="e", aggregation="count_unique",
                                     expression=name))
        if name.isidentifier()
        else both(m.property_text_sql, name)
    )  # fmt: skip
    exprs = [
        both(m.property_text_sql, name),
        both(m.property_number_sql, name),
        both(m.group_key_sql, keyed),
        unique,
        both(m.condition_sql, eq),
        both(m.condition_sql, gt),
    ]
    return exprs, ["text", "number", "group key", "distinct text", "eq", "gt"]


def docs_events(docs: list[str]) -> list[tuple]:
    return [(n, "acme", "e", None, doc) for n, doc in enumerate(docs)]


@pytest.mark.parametrize("name", AWKWARD_NAMES)
def test_awkward_values_read_alike(duck, spark, name):
    key = json.dumps(name)
    docs = [f"{{{key}: {value}}}" for value in AWKWARD_VALUES] + ["{}", f'{{{key}: 1, "x": 2}}']
    exprs, labels = property_forms(name)
    assert_same(duck, spark, docs_events(docs), exprs, labels)


def test_a_repeated_key_reads_its_first_value(duck, spark):
    docs = ['{"v": "x", "v": 2}', '{"v": 1e7, "v": "y"}']
    exprs, labels = property_forms("v")
    assert_same(duck, spark, docs_events(docs), exprs, labels)


# any finite double, uniform over its bits: Java 17 writes more digits than the shortest for
# about 0.4% of them (mostly between 1e16 and 1e19), which the Spark dialect must undo
any_double = (
    st.integers(min_value=0, max_value=2**64 - 1)
    .map(lambda bits: struct.unpack("<d", bits.to_bytes(8, "little"))[0])
    .filter(math.isfinite)
)
# JSON values as Python writes them (floats in repr's layout: 1e+30, 1.5e-07)
json_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    any_double,
    st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=False, allow_infinity=False, places=14).map(str),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
    st.booleans(),
    st.none(),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(json_values, min_size=1, max_size=200))
def test_any_value_reads_alike(duck, spark, values):
    exprs, labels = property_forms("v")
    docs = [json.dumps({"v": v}) for v in values]
    assert_same(duck, spark, docs_events(docs), exprs, labels)


# magnitudes below 10^13 with 12 decimals: inside what both engines divide exactly
operands = st.decimals(
    min_value=Decimal("-9999999999999"), max_value=Decimal("9999999999999"), places=12
)


def _half_up(a: Decimal, b: Decimal) -> Decimal | None:
    if b == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 80
        quotient = (a / b).quantize(Decimal("1E-12"), rounding=ROUND_HALF_UP)
    return quotient if quotient else quotient.copy_abs()  # SQL has no -0


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(st.tuples(operands, operands), min_size=1, max_size=80))
def test_division_is_exact_half_up_in_both(duck, spark, pairs):
    meter = Meter(code="d", event_name="e", aggregation="sum", expression="a / b")
    extra = [(Decimal(1), Decimal(3)), (Decimal(-2), Decimal(3)), (Decimal("1E-12"), Decimal(2))]
    pairs = pairs + extra + [(Decimal(7), Decimal(0))]
    docs = [json.dumps({"a": str(a), "b": str(b)}) for a, b in pairs]
    ours, theirs = evaluate(duck, spark, docs_events(docs), [both(m.value_sql, meter)])
    assert theirs == ours
    want = [_half_up(a, b) for a, b in pairs]
    # DuckDB's value: a quotient beyond 10^14 overflows nothing there, and is exact too
    assert [row[1] for row in ours] == [None if w is None else str(w) for w in want]


@pytest.mark.parametrize(
    "expression",
    [
        "a * b",
        "a + b - c",
        "-(a * b) / c",
        "(a + 0.5) * b / 3 / c",
        "a / b / c / 7",
        "a * b * c",
        "-a - b",
        "-(-a)",
    ],  # fmt: skip
)
def test_expressions_overflow_and_round_alike(duck, spark, expression):
    meter = Meter(code="x", event_name="e", aggregation="sum", expression=expression)
    big, tiny = "99999999999999.5", "0.000000000001"
    triples = [
        ("2", "3", "7"), ("1.5", "-2.25", "0.3"), (big, big, "1"), (big, "1", tiny),
        ("10000000", "10000000", "3"), ("1", "0", "1"), ("x", "1", "1"), ("1e13", "9.99", "-1"),
        (tiny, tiny, tiny), ("-7", "7", "-7"),
        # 35 digits: Spark's unary minus would round this to 34
        ("10000000000000000000000.058823529412", "-0.000000000001", "3"),
    ]  # fmt: skip
    docs = [json.dumps(dict(zip("abc", t, strict=True))) for t in triples]
    exprs = [both(m.value_sql, meter), both(m.text_value_sql, meter.model_copy(
        update={"aggregation": "count_unique"}))]  # fmt: skip
    assert_same(duck, spark, docs_events(docs), exprs, ["value", "distinct text"])


def _scenario_dirs() -> list[Path]:
    return sorted(p.parent for p in SCENARIOS.glob("*/scenario.yaml")) if SCENARIOS.exists() else []


def _ingested(folder: Path, tmp_path: Path) -> list[tuple]:
    """The scenario's events as the DuckDB ingest stores them, rejected lines included."""
    landing = tmp_path / "landing"
    shutil.copytree(folder / "events", landing)
    con = connect(tmp_path / "warehouse.duckdb")
    try:
        run_ingest(con, landing, NOW)
        return con.execute(
            "SELECT read_seq, customer_id, event_name, source, CAST(properties AS VARCHAR) "
            "FROM meterbook_raw.raw_events ORDER BY read_seq"
        ).fetchall()
    finally:
        con.close()


def _catalog_exprs(catalog) -> tuple[list, list]:
    exprs, labels = [], []
    for meter in catalog.meters:
        for what, build in (
            ("match", m.match_sql),
            ("value", m.value_sql),
            ("text value", m.text_value_sql),
            ("group key", m.group_key_sql),
        ):
            pair = both(build, meter)
            if pair[0] is not None:
                exprs.append(pair)
                labels.append(f"meter {meter.code}: {what}")
    for i, rule in enumerate(catalog.exclusions):
        exprs.append(both(m.exclusion_sql, rule))
        labels.append(f"exclusion {i} ({rule.reason})")
    return exprs, labels


@pytest.mark.parametrize("folder", _scenario_dirs(), ids=lambda p: p.name)
def test_scenario_events_meter_alike(duck, spark, folder, tmp_path):
    catalog = load_catalog(folder / "catalog")
    events = _ingested(folder, tmp_path)
    exprs, labels = _catalog_exprs(catalog)
    assert exprs, f"{folder.name}: the catalog has no meter"
    assert_same(duck, spark, events, exprs, labels)


def test_scenarios_are_there():
    if not _scenario_dirs():
        pytest.skip(f"no shared scenarios at {SCENARIOS}")


def test_exclusion_on_an_event_field(duck, spark):
    rule = Exclusion(reason="internal", field="customer_id", op="in", values=["qa", "it's"])
    events = [(0, "qa", "e", None, "{}"), (1, "it's", "e", None, "{}"), (2, "x", "e", "s", "{}")]
    assert_same(duck, spark, events, [both(m.exclusion_sql, rule)], ["exclusion"])


def _dbt_spark_division(a: str, b: str) -> str:
    """The Spark form of dbt's mb_div (macros/dialect.sql), rendered with plain Jinja."""
    text = (DBT_PROJECT_DIR / "macros" / "dialect.sql").read_text()
    return jinja2.Environment().from_string(text).module.spark__mb_div(a, b)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pairs=st.lists(st.tuples(operands, operands), min_size=1, max_size=80))
def test_the_models_division_on_spark_is_mb_div(duck, spark, pairs):
    """The models' mb_div on Spark (time-weighted shares, units) against DuckDB's macro."""
    pairs = pairs + [(Decimal(2), Decimal(3)), (Decimal(-1), Decimal(0)), (Decimal(0), Decimal(-7))]
    values = ", ".join(f"(CAST('{a}' AS DECIMAL(38, 12)), CAST('{b}' AS DECIMAL(38, 12)))"
                       for a, b in pairs)  # fmt: skip
    query = "SELECT {} FROM (VALUES {}) AS t(a, b)"
    # DuckDB's macro raises on a zero divisor or an overflow (the models never divide by zero:
    # a window's length, a unit's divide_by); Spark's form gives NULL there
    ours = duck.execute(query.format("TRY(mb_div(a, b))", values)).fetchall()
    theirs = spark.sql(query.format(_dbt_spark_division("a", "b"), values)).collect()
    assert [_plain(r) for r in theirs] == [_plain(r) for r in ours]
