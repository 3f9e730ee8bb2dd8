"""Where Spark SQL and DuckDB disagree on what metering reads from an event's properties: a
probe for the Spark port of the meters' compiled SQL (issue 29, docs/SCALING.md), not a test.

Run:  .venv/bin/pip install -c constraints.txt -e ".[spark]"      # PySpark; Java 17 needed
      .venv/bin/python scripts/spark_dialect_probe.py

For each property value of a corpus of awkward ones, it evaluates in DuckDB the SQL meterbook
compiles today (orchestration/catalog/tables/metering.py: the text form, the number, a group
key) and in a PySpark session the nearest Spark SQL (get_json_object, an RLIKE on the same
number pattern, TRY_CAST, to_json of a named_struct), and prints every value where they
differ. The Spark side is a candidate dialect: its differences are the port's to-do list.

Found so far (2026-12-06, PySpark 4.3): Spark's string literals read backslash escapes, and
to_json drops null fields (both mended in the candidate below); get_json_object writes some
numbers in Java's form (1e30 as 1.0E30), which changes a text form, so a group key or an
`eq` filter (not yet mended: the candidate differs there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from orchestration.catalog.tables.metering import (  # noqa: E402
    NUMBER_PATTERN,
    property_number_sql,
    property_text_sql,
)
from orchestration.sql import quote_literal  # noqa: E402

# each is the JSON text of the property `v` (a missing `v` is the document {})
VALUES = [
    "5", "5.0", "2.50", "-3", "0", "-0", "1e3", "1E-2", "1.5e+2", "0.1234567890125",
    "12345678901234567890123456", "123456789012345678901234567", "1e30",
    '"5"', '" 7 "', '"-.5"', '"1e3"', '"+4"', '"abc"', '""', '"NaN"', '"Infinity"',
    '"2.50"', "true", "false", "null", '{"a": 1}', "[1, 2]", '"caf\\u00e9"', '"tab\\there"',
    '"quote\\"d"', None,
]  # fmt: skip
SPARK_TEXT = "get_json_object(properties, '$.v')"
# Spark's string literals read backslash escapes (DuckDB's do not): the pattern's `\s` would
# reach RLIKE as `s` and " 7 " would not be a number. Found by this probe; doubled here.
SPARK_NUMBER = (
    f"CASE WHEN {SPARK_TEXT} RLIKE {quote_literal(NUMBER_PATTERN.replace(chr(92), chr(92) * 2))} "
    f"THEN try_cast(trim({SPARK_TEXT}) AS DECIMAL(38, 12)) END"
)
# to_json leaves out null fields unless told not to: {} where DuckDB writes {"v":null}
SPARK_GROUP_KEY = f"to_json(named_struct('v', {SPARK_TEXT}), map('ignoreNullFields', 'false'))"


def documents() -> list[str]:
    return ["{}" if v is None else '{"v": ' + v + "}" for v in VALUES]


def duckdb_rows(docs: list[str]) -> list[tuple]:
    con = duckdb.connect()
    con.execute("create table events (n integer, properties json)")
    con.executemany("insert into events values (?, ?)", list(enumerate(docs)))
    return con.execute(f"""
        select n, {property_text_sql("v")},
            cast({property_number_sql("v")} as varchar),
            cast(json_object('v', {property_text_sql("v")}) as varchar)
        from events order by n
    """).fetchall()


def spark_rows(docs: list[str]) -> list[tuple]:
    from pyspark.sql import SparkSession  # noqa: PLC0415

    spark = (
        SparkSession.builder.master("local[1]")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    try:
        spark.createDataFrame(list(enumerate(docs)), "n int, properties string") \
            .createOrReplaceTempView("events")  # fmt: skip
        rows = spark.sql(f"""
            select n, {SPARK_TEXT}, cast({SPARK_NUMBER} as string), {SPARK_GROUP_KEY}
            from events order by n
        """).collect()
        return [tuple(row) for row in rows]
    finally:
        spark.stop()


def main() -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    docs = documents()
    ours, theirs = duckdb_rows(docs), spark_rows(docs)
    differing = 0
    print(f"{'property v':<32} {'what':<10} {'DuckDB (today)':<30} {'Spark (candidate)':<30}")
    for doc, a, b in zip(docs, ours, theirs, strict=True):
        for what, x, y in zip(("text", "number", "group key"), a[1:], b[1:], strict=True):
            if x != y:
                differing += 1
                shown = doc[6:-1] if doc != "{}" else "(missing)"  # the text after {"v":
                print(f"{shown:<32} {what:<10} {x!s:<30} {y!s:<30}")
    print(f"\n{len(docs)} values x 3 forms: {differing} differ")


if __name__ == "__main__":
    main()
