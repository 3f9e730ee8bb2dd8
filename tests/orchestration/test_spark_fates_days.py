"""Which days Spark's fates rebuild, and which of DuckDB's fates its rows replace
(orchestration/defs/dbt/spark_stage.py; Spark itself in tests/spark/)."""

from __future__ import annotations

from datetime import date

import duckdb

from orchestration.defs.dbt.spark_stage import fates_replaced, fates_to_rebuild
from orchestration.warehouse.lake import LakeTable
from orchestration.warehouse.raw import ensure_raw_schema

FATES = "intermediate.int_events_fated"


def _raw(con, read_seq: int, ts: str | None) -> None:
    con.execute(
        "INSERT INTO meterbook_raw.raw_events (read_seq, file_seq, path, line_no, event_ts, "
        "ingested_at) VALUES (?, 1, 'a.jsonl', ?, CAST(? AS TIMESTAMPTZ), now())",
        [read_seq, read_seq, ts],
    )


def test_the_days_rebuilt_are_those_of_the_events_duckdbs_fates_lack(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("SET TimeZone = 'UTC'")
        ensure_raw_schema(con)
        assert fates_to_rebuild(con) is None  # no fates yet: every event
        con.execute("CREATE SCHEMA intermediate")
        con.execute(f"CREATE TABLE {FATES} (read_seq BIGINT, event_date DATE)")
        assert fates_to_rebuild(con) is None  # none stored
        con.execute(f"INSERT INTO {FATES} VALUES (5, DATE '2026-10-01')")
        for read_seq, ts in ((4, "2026-10-01T00:00:00Z"), (5, "2026-10-01T01:00:00Z"),
                             (6, "2026-10-03T23:59:59+00:00"), (7, None),
                             (8, "2026-10-03T00:30:00+02:00")):  # fmt: skip
            _raw(con, read_seq, ts)
        assert fates_to_rebuild(con) == {"after": 5, "days": ["2026-10-02", "2026-10-03", None]}


def _spark_rows(tmp_path, rows: str) -> LakeTable:
    folder = tmp_path / "out"
    folder.mkdir()
    if rows:
        duckdb.execute(
            f"COPY (SELECT * FROM (VALUES {rows}) AS t(read_seq, event_date, fated_after)) "
            f"TO '{folder}/part-0.parquet' (FORMAT parquet)"
        )
    return LakeTable(FATES, folder)


def test_a_full_build_replaces_every_fate(tmp_path):
    table = _spark_rows(tmp_path, "(1, DATE '2026-10-01', 0), (2, NULL, 0)")
    assert fates_replaced(table) == (None, True)


def test_a_build_by_day_replaces_its_days_only(tmp_path):
    table = _spark_rows(
        tmp_path, "(6, DATE '2026-10-03', 5), (7, NULL, 5), (9, DATE '2026-10-02', 5)"
    )
    where, any_rows = fates_replaced(table)
    assert any_rows
    chosen = duckdb.execute(
        "SELECT list(d ORDER BY d NULLS LAST) FROM (VALUES (DATE '2026-10-01'), (DATE '2026-10-02'),"
        f" (DATE '2026-10-03'), (NULL)) AS t(event_date), LATERAL (SELECT event_date AS d) "
        f"WHERE {where}"
    ).fetchone()[0]
    assert chosen == [date(2026, 10, 2), date(2026, 10, 3), None]


def test_nothing_rebuilt_replaces_nothing(tmp_path):
    assert fates_replaced(_spark_rows(tmp_path, "")) == ("false", False)
