"""Questions about the warehouse itself, asked the same way everywhere."""

from __future__ import annotations

import duckdb


def table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    """True when `schema.table` exists as a table or a view (dbt may build either)."""
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_catalog = current_database() AND table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchall()  # all of it: a half-read result blocks con.register() on this connection
    return bool(found[0][0])
