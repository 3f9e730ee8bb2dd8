"""Safe SQL text for names that come from the catalog, and the warehouse connection."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb


def quote_literal(value: str) -> str:
    """A SQL string literal; quotes are doubled, so the value cannot end the literal."""
    if "\x00" in value:
        raise ValueError("a NUL character cannot appear in a SQL literal")
    return "'" + value.replace("'", "''") + "'"


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_json_path(prop: str) -> str:
    """The DuckDB JSON path literal for a top-level property, whatever characters it has."""
    return quote_literal("$." + json.dumps(prop))


def connect(path: Path | str, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A warehouse connection with the session settings every stage relies on."""
    con = duckdb.connect(str(path), read_only=read_only)
    con.execute("SET TimeZone = 'UTC'")
    return con
