"""The incremental fates table (dbt model int_events_fated), as the usage step sees it.

dbt decides what a build fates (dbt_project/macros/usage_incremental.sql); Python reads the
table before and after to tell finance what the build did, and rebuilds the daily usage when
a catalog change made dbt fate every event again.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from orchestration.warehouse.models import model_exists, relation, with_refs


@dataclass(frozen=True)
class FatesState:
    watermark: int  # the last read_seq given a fate
    fingerprint: str | None  # of the catalog the fates were computed with
    fated_in: str | None  # the dbt invocation of the newest fate


def fates_state(con: duckdb.DuckDBPyConnection) -> FatesState | None:
    """The stored fates' watermark and catalog fingerprint; None before any build."""
    if not model_exists(con, "int_events_fated") or _older_layout(con):
        return None
    row = con.execute(
        with_refs(
            "SELECT read_seq, catalog_fingerprint, fated_in FROM {{ ref('int_events_fated') }} "
            "WHERE read_seq = (SELECT max(read_seq) FROM {{ ref('int_events_fated') }})"
        )
    ).fetchone()
    return FatesState(0, None, None) if row is None else FatesState(int(row[0]), row[1], row[2])


def fates_build_summary(
    con: duckdb.DuckDBPyConnection, before: FatesState | None
) -> dict[str, object]:
    """What the build that followed `before` did: every event fated again, or the new ones
    (and how many stored occurrences of repeated keys it fated again)."""
    after = fates_state(con)
    if after is None:
        return {"mode": "none", "events_fated": 0}
    table = relation("int_events_fated")
    full = before is None or before.fingerprint != after.fingerprint
    since = 0 if full else before.watermark
    # two queries, each bounded by what its scan can skip on (read_seq; the build's own
    # invocation id, the same on all its rows)
    new = con.execute(f"SELECT count(*) FROM {table} WHERE read_seq > ?", [since]).fetchone()[0]
    again = con.execute(
        f"SELECT count(*) FROM {table} WHERE read_seq <= ? AND fated_in = ?",
        [since, after.fated_in],
    ).fetchone()[0]
    return {
        "mode": "every event" if full else "incremental",
        "reason": _reason(before, full),
        "events_fated": int(new) + (0 if full else int(again)),
        "stored_events_fated_again": 0 if full else int(again),
        "watermark": after.watermark,
        "catalog_changed": bool(full and before is not None and before.fingerprint),
    }


def _reason(before: FatesState | None, full: bool) -> str:
    if not full:
        return f"events read after read_seq {before.watermark}"
    if before is None or not before.fingerprint:
        return "first build"
    return "the catalog's meters, exclusions or customers changed: every event fated again"


def drop_fates_of_an_older_layout(con: duckdb.DuckDBPyConnection) -> bool:
    """Warehouses built before fates were incremental hold the table without its build
    columns, which an incremental build cannot append to: drop it, so the next build fates
    every event again. True when it was dropped."""
    if not model_exists(con, "int_events_fated") or not _older_layout(con):
        return False
    con.execute(f"DROP TABLE {relation('int_events_fated')}")
    return True


def _older_layout(con: duckdb.DuckDBPyConnection) -> bool:
    schema, table = relation("int_events_fated").split(".")
    return not con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
        "AND column_name = 'catalog_fingerprint' AND database_name = current_database()",
        [schema, table],
    ).fetchone()[0]
