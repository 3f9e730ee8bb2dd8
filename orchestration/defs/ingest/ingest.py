"""Landing files -> meterbook_raw (SPEC 2.1-2.3, docs/ARCHITECTURE.md).

A run looks at every landing file, hashes the ones it has not seen unchanged before (path,
size and mtime), and reads each new content once, in path order, after everything read by
earlier runs. The whole run is one transaction: a crash leaves nothing half-written and the
next run reads the same files again from scratch. See README.md beside this file for the
choices made where the SPEC is silent.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb

from orchestration.defs.ingest import keys, parse, store
from orchestration.defs.ingest.discovery import LandingFile, list_landing_files, sha256_file
from orchestration.defs.ingest.readers import UnreadableFile, read_batches
from orchestration.defs.ingest.records import DEFAULT_CHUNK_BYTES
from orchestration.defs.ingest.schema import ensure_raw_schema, raw_schema_exists
from orchestration.sql import transaction

log = logging.getLogger(__name__)

__all__ = [
    "IngestResult",
    "IngestedFile",
    "ensure_raw_schema",
    "pending_files",
    "run_ingest",
]


@dataclass(frozen=True)
class IngestedFile:
    path: str
    sha256: str
    format: str
    lines_read: int
    error: str | None


@dataclass(frozen=True)
class IngestResult:
    files: list[IngestedFile]
    skipped_copies: list[str]
    lines_read: int
    event_days: list[date]  # UTC days touched by new events


@dataclass
class _Plan:
    new: list[tuple[LandingFile, str]] = field(default_factory=list)  # (file, sha256)
    copies: list[tuple[LandingFile, str]] = field(default_factory=list)
    touched: list[tuple[LandingFile, str]] = field(default_factory=list)  # known path, new mtime


def run_ingest(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    now: datetime,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> IngestResult:
    """Ingest every landing file whose content is new; idempotent."""
    ensure_raw_schema(con)
    plan = _plan(con, list_landing_files(landing_dir))
    if not (plan.new or plan.copies or plan.touched):
        return IngestResult(files=[], skipped_copies=[], lines_read=0, event_days=[])
    with transaction(con):
        files, first_seq = _read_new_files(con, plan.new, now, chunk_bytes)
        _record_paths(con, plan, now)
        days = _event_days(con, first_seq) if files else []
    return IngestResult(
        files=files,
        skipped_copies=[f.rel for f, _ in plan.copies],
        lines_read=sum(f.lines_read for f in files),
        event_days=days,
    )


def pending_files(con: duckdb.DuckDBPyConnection, landing_dir: Path) -> list[Path]:
    """Landing files whose content is not ingested yet; reads only (for the sensor)."""
    candidates = list_landing_files(landing_dir)
    if not raw_schema_exists(con):
        return [f.path for f in candidates]
    cached = _cached_paths(con)
    ingested = _ingested_hashes(con)
    pending = []
    for f in candidates:
        if (f.rel, f.size_bytes, f.mtime_ns) in cached:
            continue
        sha = _hash_or_none(f)
        if sha is not None and sha not in ingested:
            pending.append(f.path)
    return pending


def _plan(con: duckdb.DuckDBPyConnection, candidates: list[LandingFile]) -> _Plan:
    cached = _cached_paths(con)
    recorded = _recorded_pairs(con)
    seen = _ingested_hashes(con)
    plan = _Plan()
    for f in candidates:
        if (f.rel, f.size_bytes, f.mtime_ns) in cached:
            continue
        sha = _hash_or_none(f)
        if sha is None:
            continue
        if (f.rel, sha) in recorded:
            plan.touched.append((f, sha))
        elif sha in seen:
            plan.copies.append((f, sha))
        else:
            plan.new.append((f, sha))
            seen.add(sha)
    return plan


def _hash_or_none(f: LandingFile) -> str | None:
    try:
        return sha256_file(f.path)
    except OSError as exc:  # unreadable right now (permissions, vanished): stays pending
        log.warning("skipping landing file %s: %s", f.rel, exc)
        return None


def _cached_paths(con: duckdb.DuckDBPyConnection) -> set[tuple[str, int, int]]:
    rows = con.execute(
        "SELECT path, size_bytes, mtime_ns FROM meterbook_raw.landing_file_paths"
    ).fetchall()
    return set(rows)


def _recorded_pairs(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    rows = con.execute("SELECT path, file_sha256 FROM meterbook_raw.landing_file_paths").fetchall()
    return set(rows)


def _ingested_hashes(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {
        row[0]
        for row in con.execute("SELECT file_sha256 FROM meterbook_raw.landing_files").fetchall()
    }


def _read_new_files(
    con: duckdb.DuckDBPyConnection,
    new: list[tuple[LandingFile, str]],
    now: datetime,
    chunk_bytes: int,
) -> tuple[list[IngestedFile], int]:
    """Read each new file in path order; returns the files and the run's first read_seq."""
    seq, file_seq = con.execute(
        "SELECT (SELECT coalesce(max(read_seq), 0) + 1 FROM meterbook_raw.raw_events), "
        "(SELECT coalesce(max(file_seq), 0) + 1 FROM meterbook_raw.landing_files)"
    ).fetchone()
    first_seq = seq
    parse.create_macros(con)
    files = []
    for offset, (f, sha) in enumerate(new):
        ingested, used = _read_file(con, f, sha, file_seq + offset, seq, now, chunk_bytes)
        files.append(ingested)
        seq += used
    keys.rank_run_keys(con, first_seq)
    return files, first_seq


def _read_file(
    con: duckdb.DuckDBPyConnection,
    f: LandingFile,
    sha: str,
    file_seq: int,
    seq_base: int,
    now: datetime,
    chunk_bytes: int,
) -> tuple[IngestedFile, int]:
    """Append one file's rows (read_seq = seq_base + line); returns it and the seqs used."""
    lines, max_line, error = 0, 0, None
    params = {"now": now, "seq_base": seq_base}
    try:
        for batch in read_batches(con, f, chunk_bytes):
            con.register(parse.SOURCE, batch.table)
            try:
                query = parse.parse_query(batch.docs_sql)
                lines += store.append_batch(con, query, params, sha, f.rel)
            finally:
                with suppress(duckdb.Error):  # keep the error that got us here
                    con.unregister(parse.SOURCE)
            max_line = max(max_line, batch.max_line)
    except UnreadableFile as exc:
        log.warning("landing file %s is unreadable: %s", f.rel, exc)
        store.forget_rows_from(con, seq_base)
        store.append_unreadable(con, seq_base, sha, f.rel, str(exc), now)
        lines, error = 1, str(exc)
    con.execute(
        "INSERT INTO meterbook_raw.landing_files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [sha, f.rel, f.format_label, f.size_bytes, file_seq, now, lines, error],
    )
    return IngestedFile(f.rel, sha, f.format_label, lines, error), max_line + 1


def _record_paths(con: duckdb.DuckDBPyConnection, plan: _Plan, now: datetime) -> None:
    rows = [
        (f.rel, sha, now, f.size_bytes, f.mtime_ns)
        for f, sha in [*plan.new, *plan.copies, *plan.touched]
    ]
    con.executemany(
        "INSERT INTO meterbook_raw.landing_file_paths VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (path, file_sha256) DO UPDATE "
        "SET size_bytes = excluded.size_bytes, mtime_ns = excluded.mtime_ns",
        rows,
    )


def _event_days(con: duckdb.DuckDBPyConnection, first_seq: int) -> list[date]:
    rows = con.execute(
        "SELECT DISTINCT CAST(timezone('UTC', event_ts) AS DATE) AS d "
        "FROM meterbook_raw.raw_events WHERE read_seq >= ? AND event_ts IS NOT NULL ORDER BY d",
        [first_seq],
    ).fetchall()
    return [row[0] for row in rows]
