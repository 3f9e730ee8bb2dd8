"""sql.insert_values: many rows in one INSERT, every value exactly as given."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import duckdb

from orchestration.sql import insert_values


def test_rows_arrive_exactly_in_one_insert_after_a_pending_statement():
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t (amount DECIMAL(38, 12), day DATE, changed_at TIMESTAMPTZ, doc JSON, "
        "n INTEGER, name VARCHAR, flag BOOLEAN)"
    )
    rows = [
        [Decimal("12345678901234567890.123456789012"), date(2026, 10, 1),
         datetime(2026, 10, 1, 12, 30, tzinfo=UTC), '{"a":1}', 3, "o'brien", True],
        [Decimal("1E+2"), None, None, None, None, "", False],
        [Decimal("-0.000000000001"), None, None, None, None, None, None],
    ]  # fmt: skip
    con.execute("BEGIN TRANSACTION")
    con.execute("DELETE FROM t")  # its result still open: DuckDB 2 refuses `register` here
    insert_values(con, "t", rows)
    insert_values(con, "t", [])  # nothing to insert is not an error
    con.execute("COMMIT")
    got = con.execute("SELECT * FROM t ORDER BY amount DESC").fetchall()
    assert got[0][:2] == (Decimal("12345678901234567890.123456789012"), date(2026, 10, 1))
    assert got[0][2] == datetime(2026, 10, 1, 12, 30, tzinfo=UTC)
    assert got[0][3:] == ('{"a":1}', 3, "o'brien", True)
    assert got[1] == (Decimal(100), None, None, None, None, "", False)
    assert got[2][0] == Decimal("-0.000000000001")
