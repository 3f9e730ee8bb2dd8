"""The meterbook_raw tables (docs/ARCHITECTURE.md), written only by the ingest.

Two additions to the architecture's columns, both for the ingest's own bookkeeping:
`landing_file_paths` is keyed by (path, file_sha256), so a producer overwriting a path with new
bytes leaves both contents on record, and carries `size_bytes` and `mtime_ns`, the cache that
lets `pending_files` skip hashing a path it has already seen unchanged.

`raw_events` carries no dedupe helpers: they are computed after a run's rows are appended
and stored beside them in `repeated_events` (keys.py), so that no raw row is ever updated.
It has no primary key on purpose: an index over tens of millions of rows costs more
to maintain than the one scan of stored keys the key ranking needs per ingest.

`raw_events` names its file by `file_seq`, not by its sha256, because a file's rows are
appended while its hash is still being computed (ingest.py); the content hash is in
`landing_files`. Warehouses written before that have their rows moved over (below), by
the next ingest or the next dbt build (defs/dbt/project.py: ensure_source_tables).
"""

from __future__ import annotations

import duckdb

from orchestration.sql import transaction
from orchestration.warehouse.tables import table_exists

RAW_EVENTS_COLUMNS = """
    read_seq BIGINT NOT NULL,           -- global read order, unique
    file_seq BIGINT NOT NULL,           -- the landing_files row it was read from
    path VARCHAR NOT NULL,
    line_no BIGINT NOT NULL,            -- 0 = the file as a whole (unreadable file)
    event_id VARCHAR,
    customer_id VARCHAR,
    event_name VARCHAR,
    event_ts TIMESTAMPTZ,
    properties JSON,
    source VARCHAR,
    parse_reason VARCHAR,
    raw_line VARCHAR,
    ingested_at TIMESTAMPTZ NOT NULL
"""

RAW_DDL = """
CREATE SCHEMA IF NOT EXISTS meterbook_raw;
CREATE TABLE IF NOT EXISTS meterbook_raw.landing_files (
    file_sha256 VARCHAR PRIMARY KEY,
    path VARCHAR NOT NULL,              -- first path seen, relative to landing/events, posix
    format VARCHAR NOT NULL,            -- jsonl, ndjson, json, csv, parquet; '.gz' appended if gzipped
    size_bytes BIGINT NOT NULL,
    file_seq BIGINT NOT NULL UNIQUE,    -- global read order of files
    ingested_at TIMESTAMPTZ NOT NULL,
    lines_read BIGINT NOT NULL,         -- = rows of this file in raw_events
    error VARCHAR                       -- set when the file as a whole could not be read
);
CREATE TABLE IF NOT EXISTS meterbook_raw.landing_file_paths (
    path VARCHAR NOT NULL,
    file_sha256 VARCHAR NOT NULL,
    first_seen_at TIMESTAMPTZ NOT NULL,
    size_bytes BIGINT NOT NULL,
    mtime_ns BIGINT NOT NULL,
    PRIMARY KEY (path, file_sha256)
);
CREATE TABLE IF NOT EXISTS meterbook_raw.raw_events (/*RAW_EVENTS*/);
-- files read by Spark (settings.warehouse: spark): their rows are in the lake's raw_events
-- too (orchestration/ingest/spark_read.py)
CREATE TABLE IF NOT EXISTS meterbook_raw.spark_read_files (
    file_seq BIGINT PRIMARY KEY
);
-- parsed events whose (customer_id, event_id) has more than one parsed occurrence; every
-- other parsed event has key_rank 1 (keys.py)
CREATE TABLE IF NOT EXISTS meterbook_raw.repeated_events (
    read_seq BIGINT NOT NULL,           -- the raw_events row
    key_rank INTEGER NOT NULL,          -- 1, 2, ... in read order over all ingests
    payload_hash VARCHAR NOT NULL,      -- event_name, instant, properties by value
    -- the key itself, so that the fates of a stored key a new event repeats are found
    -- without reading the stored raw events (int_events_fated recomputes them)
    customer_id VARCHAR,
    event_id VARCHAR
);
""".replace("/*RAW_EVENTS*/", RAW_EVENTS_COLUMNS)


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the meterbook_raw tables if they are missing; existing rows are kept."""
    con.execute(RAW_DDL)
    _move_key_columns(con)
    _name_files_by_seq(con)
    _key_repeated_events(con)


def _move_key_columns(con: duckdb.DuckDBPyConnection) -> None:
    """Warehouses written before repeated_events kept key_rank, key_repeated and
    payload_hash on raw_events: move the repeated rows' ranks over, then drop the columns."""
    if not _has_raw_column(con, "key_repeated"):
        return
    with transaction(con):
        con.execute(
            "INSERT INTO meterbook_raw.repeated_events (read_seq, key_rank, payload_hash) "
            "SELECT read_seq, key_rank, payload_hash "
            "FROM meterbook_raw.raw_events WHERE key_repeated AND parse_reason IS NULL"
        )
        for column in ("key_rank", "key_repeated", "payload_hash"):
            con.execute(f"ALTER TABLE meterbook_raw.raw_events DROP COLUMN {column}")


def _key_repeated_events(con: duckdb.DuckDBPyConnection) -> None:
    """Warehouses written before repeated_events carried the key: add it from raw_events
    (a one-off; later rows are written with it by the ingest)."""
    for column in ("customer_id", "event_id"):
        con.execute(
            f"ALTER TABLE meterbook_raw.repeated_events ADD COLUMN IF NOT EXISTS {column} VARCHAR"
        )
    missing = con.execute(
        "SELECT count(*) FROM meterbook_raw.repeated_events WHERE customer_id IS NULL"
    ).fetchone()[0]
    if not missing:
        return
    with transaction(con):
        con.execute(
            """
            UPDATE meterbook_raw.repeated_events AS k
            SET customer_id = r.customer_id, event_id = r.event_id
            FROM meterbook_raw.raw_events AS r
            WHERE r.read_seq = k.read_seq AND k.customer_id IS NULL
            """
        )


def _name_files_by_seq(con: duckdb.DuckDBPyConnection) -> None:
    """Warehouses written before file_seq named each row's file by its sha256: copy the rows
    into a table of today's columns, looking file_seq up in landing_files (a one-off rewrite;
    DuckDB cannot make a column NOT NULL in the transaction that filled it)."""
    if not _has_raw_column(con, "file_sha256"):
        return
    columns = [line.split()[0] for line in RAW_EVENTS_COLUMNS.strip().splitlines()]
    picked = ", ".join("f.file_seq" if c == "file_seq" else f"e.{c}" for c in columns)
    with transaction(con):
        con.execute(f"CREATE TABLE meterbook_raw.raw_events_new ({RAW_EVENTS_COLUMNS})")
        con.execute(
            f"INSERT INTO meterbook_raw.raw_events_new SELECT {picked} "
            "FROM meterbook_raw.raw_events AS e "
            "LEFT JOIN meterbook_raw.landing_files AS f USING (file_sha256)"
        )
        con.execute("DROP TABLE meterbook_raw.raw_events")
        con.execute("ALTER TABLE meterbook_raw.raw_events_new RENAME TO raw_events")


def _has_raw_column(con: duckdb.DuckDBPyConnection, column: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE schema_name = 'meterbook_raw' "
            "AND table_name = 'raw_events' AND column_name = ? "
            "AND database_name = current_database()",
            [column],
        ).fetchone()[0]
    )


def raw_schema_exists(con: duckdb.DuckDBPyConnection) -> bool:
    return all(
        table_exists(con, "meterbook_raw", t) for t in ("landing_files", "landing_file_paths")
    )


def raw_watermark(con: duckdb.DuckDBPyConnection) -> int:
    """The highest raw_events.read_seq ingested so far (0 before any ingest)."""
    if not table_exists(con, "meterbook_raw", "raw_events"):
        return 0
    return int(
        con.execute("SELECT coalesce(max(read_seq), 0) FROM meterbook_raw.raw_events").fetchone()[0]
    )
