"""Build small warehouses for the metering tests: raw tables, catalog tables, windows, dbt.

The raw tables are ingest's own (ensure_raw_schema); events are written straight into
them, and the repeated keys are ranked the way ingest documents it, with ingest's payload
hash.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import re
import shutil
import tempfile
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from orchestration.catalog.loader import load_catalog
from orchestration.catalog.models import Catalog
from orchestration.catalog.tables.metering import write_metering_tables
from orchestration.defs.dbt.runner import dbt_args, run_dbt
from orchestration.ingest import parse
from orchestration.sql import connect
from orchestration.warehouse.billing import ensure_billing_schema
from orchestration.warehouse.raw import ensure_raw_schema
from orchestration.workspace import DBT_PROJECT_DIR

# this stage's models and everything they read; the billing models are other engineers' work
METERING_SELECT = "+fct_event_fates +fct_daily_meter_usage +fct_period_meter_quantities"
INGESTED_AT = datetime(2026, 11, 6, tzinfo=UTC)
# one dbt target folder for every test warehouse: dbt re-parses only what changed
_DBT_TARGET = Path(tempfile.mkdtemp(prefix="metering-dbt-"))
atexit.register(shutil.rmtree, _DBT_TARGET, ignore_errors=True)


def create_decimal_macros(con: duckdb.DuckDBPyConnection) -> None:
    """Run the SQL of dbt's create_decimal_macros (mb_div, mb_mul) on a Python connection."""
    text = (DBT_PROJECT_DIR / "macros" / "decimal.sql").read_text()
    body = re.search(r"{% macro create_decimal_macros\(\) %}(.*?){% endmacro %}", text, re.S)
    con.execute(body.group(1))


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def ev(event_id, customer_id, event_name, at, props=None, *, path="events.jsonl", reason=None):
    """One raw event. `at` is an RFC 3339 string or None (e.g. for bad_timestamp)."""
    return {
        "event_id": event_id,
        "customer_id": customer_id,
        "event_name": event_name,
        "event_ts": ts(at) if at else None,
        "properties": props or {},
        "path": path,
        "parse_reason": reason,
    }


def _file_sha(path: str) -> str:
    return hashlib.sha256(path.encode()).hexdigest()


def load_events(con: duckdb.DuckDBPyConnection, events: list[dict]) -> None:
    """Append events in read order (after any already loaded), as one ingest would."""
    ensure_raw_schema(con)
    start = con.execute(
        "SELECT coalesce(max(read_seq), 0) FROM meterbook_raw.raw_events"
    ).fetchone()[0]
    file_seqs = _file_seqs(con, [e["path"] for e in events])
    lines: dict[str, int] = {}
    for seq, e in enumerate(events, start=start + 1):
        line = lines[e["path"]] = lines.get(e["path"], 0) + 1
        con.execute(
            """INSERT INTO meterbook_raw.raw_events (read_seq, file_seq, path, line_no, event_id,
               customer_id, event_name, event_ts, properties, parse_reason,
               ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [
                seq,
                file_seqs[e["path"]],
                e["path"],
                line,
                e["event_id"],
                e["customer_id"],
                e["event_name"],
                e["event_ts"],
                json.dumps(e["properties"]),
                e["parse_reason"],
                INGESTED_AT,
            ],
        )
    _register_files(con, file_seqs)
    _rank_keys(con)


def _file_seqs(con: duckdb.DuckDBPyConnection, paths: list[str]) -> dict[str, int]:
    """Each path's file (one content per path here): its landing_files row's, or a new one."""
    known = dict(
        con.execute("SELECT file_sha256, file_seq FROM meterbook_raw.landing_files").fetchall()
    )
    seqs: dict[str, int] = {}
    for path in dict.fromkeys(paths):
        seqs[path] = known.get(_file_sha(path)) or max([0, *known.values(), *seqs.values()]) + 1
    return seqs


def _register_files(con: duckdb.DuckDBPyConnection, file_seqs: dict[str, int]) -> None:
    for path, seq in file_seqs.items():
        sha = _file_sha(path)
        con.execute("DELETE FROM meterbook_raw.landing_files WHERE file_sha256 = ?", [sha])
        con.execute(
            """INSERT INTO meterbook_raw.landing_files
               (file_sha256, path, format, size_bytes, file_seq, ingested_at, lines_read, error)
               SELECT ?, ?, 'jsonl', 0, ?, ?, count(*), NULL
               FROM meterbook_raw.raw_events WHERE file_seq = ?""",
            [sha, path, seq, INGESTED_AT, seq],
        )
        _insert_path(con, path, sha)


def _insert_path(con: duckdb.DuckDBPyConnection, path: str, sha: str) -> None:
    # ingest's table has bookkeeping columns of its own; fill the ones this table has
    columns = {
        name
        for (name,) in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'meterbook_raw' "
            "AND table_name = 'landing_file_paths'"
        ).fetchall()
    }
    values = {
        "path": path,
        "file_sha256": sha,
        "first_seen_at": INGESTED_AT,
        "size_bytes": 0,
        "mtime_ns": 0,
    }
    values = {k: v for k, v in values.items() if k in columns}
    con.execute(
        "DELETE FROM meterbook_raw.landing_file_paths WHERE path = ? AND file_sha256 = ?",
        [path, sha],
    )
    con.execute(
        f"INSERT INTO meterbook_raw.landing_file_paths ({', '.join(values)}) "
        f"VALUES ({', '.join('?' for _ in values)})",
        list(values.values()),
    )


def _rank_keys(con: duckdb.DuckDBPyConnection) -> None:
    parse.create_macros(con)
    con.execute(
        """DELETE FROM meterbook_raw.repeated_events;
           INSERT INTO meterbook_raw.repeated_events
           SELECT read_seq, key_rank, mbi_payload_hash(event_name, event_ts, properties),
                  customer_id, event_id
           FROM (SELECT *,
                        row_number() OVER (PARTITION BY customer_id, event_id ORDER BY read_seq) AS key_rank,
                        count(*) OVER (PARTITION BY customer_id, event_id) AS n
                 FROM meterbook_raw.raw_events WHERE parse_reason IS NULL)
           WHERE n > 1"""
    )


def catalog_from_yaml(tmp_path: Path, text: str) -> Catalog:
    folder = tmp_path / "catalog"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.yaml").write_text(textwrap.dedent(text))
    return load_catalog(folder)


def set_windows(con: duckdb.DuckDBPyConnection, windows: list[tuple]) -> None:
    """windows: (close_month, window_id, billing_customer_id, start, end[, period_start,
    period_end]) with RFC 3339 texts; without a period, the window is its whole period."""
    con.execute("CREATE SCHEMA IF NOT EXISTS meterbook_billing")
    con.execute(
        """CREATE OR REPLACE TABLE meterbook_billing.meter_windows (close_month VARCHAR,
           window_id VARCHAR, billing_customer_id VARCHAR, window_start TIMESTAMPTZ,
           window_end TIMESTAMPTZ, period_start TIMESTAMPTZ, period_end TIMESTAMPTZ)"""
    )
    for month, window_id, customer, start, end, *period in windows:
        period_start, period_end = period or (start, end)
        con.execute(
            "INSERT INTO meterbook_billing.meter_windows VALUES (?, ?, ?, ?, ?, ?, ?)",
            [month, window_id, customer, ts(start), ts(end), ts(period_start), ts(period_end)],
        )


class Warehouse:
    """A warehouse file in a test folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.path = folder / "warehouse.duckdb"

    def connect(self) -> duckdb.DuckDBPyConnection:
        return connect(self.path)

    def setup(self, catalog: Catalog, events: list[dict], windows: list[tuple] = ()) -> None:
        with self.connect() as con:
            load_events(con, events)
            write_metering_tables(con, catalog)
            ensure_billing_schema(con)  # as every dbt build does (defs/dbt/project.py)
            if windows:
                set_windows(con, list(windows))

    def dbt(self, command: str = "build", select: str | None = METERING_SELECT, **vars) -> None:
        run_dbt(self.path, dbt_args(command, select), vars, target_path=_DBT_TARGET)

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.connect() as con:
            return con.execute(sql, params or []).fetchall()
