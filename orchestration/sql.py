"""Safe SQL text for names that come from the catalog, and the warehouse connection."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa


def quote_literal(value: str) -> str:
    """A SQL string literal; quotes are doubled, so the value cannot end the literal."""
    if "\x00" in value:
        raise ValueError("a NUL character cannot appear in a SQL literal")
    return "'" + value.replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_json_path(prop: str) -> str:
    """The DuckDB JSON path literal for a top-level property, whatever characters it has.

    DuckDB reads a quoted key literally, a backslash only escaping the character after it:
    JSON escapes (`\\u00fc`, `\\t`, `\\ud83d\\ude00`) are not decoded, so every
    character other than the quote and the backslash goes in as itself.
    """
    if not prop:
        raise ValueError("an empty property name has no JSON path")
    escaped = prop.replace("\\", "\\\\").replace('"', '\\"')
    return quote_literal('$."' + escaped + '"')


# DuckDB would take 80% of RAM before spilling; a bounded limit keeps a large backfill
# beside the Dagster webserver and daemon on an ordinary machine.
MEMORY_LIMIT = os.environ.get("METERBOOK_MEMORY_LIMIT", "4GB")


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A warehouse connection with the session settings every stage relies on."""
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET memory_limit = {quote_literal(MEMORY_LIMIT)}")
    return con


def connect_when_free(path: Path | str, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    """`connect`, waiting up to `wait_seconds` while another process has the file open.

    Our own processes queue on the workspace lock first; this waits for one that holds the
    file without it, such as the dbt child of a close that was killed (SIGKILL reaches the
    close, not its children).
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return connect(path)
        except duckdb.IOException as exc:
            if "Could not set lock" not in str(exc):
                raise
            if time.monotonic() >= deadline:
                from orchestration.locking import WorkspaceLocked  # noqa: PLC0415

                raise WorkspaceLocked(
                    f"workspace is busy: {path} is held open by another process; "
                    f"gave up after waiting {wait_seconds:g}s"
                ) from None
            time.sleep(0.1)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction around the block; inside a caller's transaction, that one is used."""
    try:
        con.execute("BEGIN TRANSACTION")
    except duckdb.TransactionException:  # already inside the caller's transaction
        yield
        return
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def insert_values(con: duckdb.DuckDBPyConnection, table: str, rows: list[Sequence[Any]]) -> None:
    """INSERT `rows` (in the table's column order) into `table` in one statement.

    `executemany` runs one statement per row: minutes for the 200,000 lines of 10,000
    invoices. Here the values travel as text in one Arrow table and the INSERT casts each to
    its column's type, so a Decimal arrives digit for digit, never through a float.
    """
    if not rows:
        return
    width = len(rows[0])
    columns = {
        f"c{i}": pa.array([_as_text(row[i]) for row in rows], pa.string()) for i in range(width)
    }
    # found by DuckDB's replacement scan under this local name; `register` would refuse
    # while the caller's last statement still holds its result
    meterbook_rows = pa.table(columns)  # noqa: F841
    con.execute(f"INSERT INTO {table} SELECT * FROM meterbook_rows")


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
