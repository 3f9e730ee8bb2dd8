"""Landing files -> meterbook_raw (SPEC 2.1-2.3, docs/ARCHITECTURE.md).

A run looks at every landing file, hashes the ones it has not seen unchanged before (path,
size and mtime), and reads each new content once, in path order, after everything read by
earlier runs. The whole run is one transaction: a crash leaves nothing half-written and the
next run reads the same files again from scratch. See README.md beside this file for the
choices made where the SPEC is silent.

Hashing overlaps reading. A file whose size no content on record has (nor any file before it
in the run) cannot be a copy, so it is read while a background thread hashes it, and its
hash is checked when the read is done: the parse is CPU-bound and the hash mostly waits on
the disk. At 50M events, by hand: hashing, parsing and appending took 93-99 s this way
against 125-133 s one after the other; the whole ingest, old and new code in turn, 193 and
158 s before against 159 and 139 s after. Should the hash still find the content on record
(a file that changed between being listed and being hashed leaves a size on record that is
not its content's), the rows just appended are dropped again. A file of a size already seen
is hashed first: a copy or a touched file has that size.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb

from orchestration.ingest import keys, parse, store
from orchestration.ingest.discovery import (
    API_FOLDER,
    LandingFile,
    list_landing_files,
    sha256_file,
)
from orchestration.ingest.readers import FileNotReadable, Limits, UnreadableFile, read_batches
from orchestration.ingest.records import (
    DEFAULT_CHUNK_BYTES,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    DEFAULT_MAX_LINE_BYTES,
)
from orchestration.ingest.spark_read import (
    NOT_READ,
    FileToRead,
    SparkReading,
    line_bound,
    read_on_spark,
)
from orchestration.sql import quote_literal, transaction
from orchestration.warehouse.lake import (
    COMMITTED_ROWS,
    next_file_seq,
    remove_unrecorded_runs,
    run_folder,
)
from orchestration.warehouse.raw import ensure_raw_schema, raw_schema_exists

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


@dataclass(frozen=True)
class _Candidate:
    file: LandingFile
    sha: Future  # its sha256, or None when it cannot be read right now (stays pending)
    read_first: bool  # no content of its size is on record: read it while it is hashed


@dataclass
class _Run:
    first_seq: int
    seq: int  # the next file's read_seq base
    file_seq: int  # the next new content's file_seq
    recorded: set[tuple[str, str]]  # (path, sha256) on record
    seen: set[str]  # contents on record, this run's included
    files: list[IngestedFile] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)
    paths: list[tuple[LandingFile, str]] = field(default_factory=list)  # to record


def run_ingest(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    now: datetime,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
    spark: SparkReading | None = None,
) -> IngestResult:
    """Ingest every landing file whose content is new; idempotent. A line longer than
    `max_line_bytes` is one malformed line, a gzipped file that decompresses to more than
    `max_decompressed_bytes` one unreadable file (the catalog's settings of those names).
    With `spark`, Spark's executors read the new files (spark_read.py); the bookkeeping, the
    keys and the rows' copy in the warehouse are the same."""
    limits = Limits(chunk_bytes, max_line_bytes, max_decompressed_bytes)
    ensure_raw_schema(con)
    cached = _cached_paths(con)
    uncached = [
        f
        for f in list_landing_files(landing_dir)
        if (f.rel, f.size_bytes, f.mtime_ns) not in cached
    ]
    if not uncached:
        return IngestResult(files=[], skipped_copies=[], lines_read=0, event_days=[])
    with _hashing(con, uncached) as candidates, transaction(con):
        run = _read_new_files(con, candidates, now, limits, spark)
        _record_paths(con, run.paths, now)
        days = _event_days(con, run.first_seq) if run.files else []
    return IngestResult(
        files=run.files,
        skipped_copies=run.copies,
        lines_read=sum(f.lines_read for f in run.files),
        event_days=days,
    )


def pending_files(
    con: duckdb.DuckDBPyConnection,
    landing_dir: Path,
    settle_seconds: float = 0,
    clock: datetime | None = None,
) -> list[Path]:
    """Landing files whose content is not ingested yet; reads only (for the sensor). A file
    modified less than `settle_seconds` before `clock` (the wall clock: mtimes are real time,
    whatever METERBOOK_NOW says) is left alone, as its producer may still be writing it;
    the events API's files (`api/`) are complete when they appear, and never wait."""
    candidates = _settled(list_landing_files(landing_dir), settle_seconds, clock)
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


def _settled(
    files: list[LandingFile], settle_seconds: float, clock: datetime | None
) -> list[LandingFile]:
    if settle_seconds <= 0:
        return files
    now_ns = time.time_ns() if clock is None else int(clock.timestamp() * 1e9)
    settle_ns = int(settle_seconds * 1e9)
    settled = []
    for f in files:
        if f.rel.startswith(f"{API_FOLDER}/"):  # the events API renames a file once it is whole
            settled.append(f)
            continue
        age_ns = now_ns - f.mtime_ns
        # an mtime far in the future (a producer's clock) would otherwise never settle
        if age_ns >= settle_ns or age_ns < -settle_ns:
            settled.append(f)
        else:
            log.info(
                "landing file %s was modified %.0f s ago: waiting for it to settle",
                f.rel,
                age_ns / 1e9,
            )
    return settled


@contextmanager
def _hashing(
    con: duckdb.DuckDBPyConnection, files: list[LandingFile]
) -> Iterator[list[_Candidate]]:
    """The files with their hashes under way, one after another on one thread, in path order."""
    sizes = {
        row[0]
        for row in con.execute("SELECT size_bytes FROM meterbook_raw.landing_files").fetchall()
    }
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meterbook-sha256")
    stop = threading.Event()
    try:
        candidates = []
        for f in files:
            candidates.append(
                _Candidate(f, pool.submit(_hash_or_none, f, stop), f.size_bytes not in sizes)
            )
            sizes.add(f.size_bytes)
        yield candidates
    except BaseException:
        stop.set()  # the run failed: the hash under way is of no use, do not wait it out
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _hash_or_none(f: LandingFile, stop: threading.Event | None = None) -> str | None:
    try:
        return sha256_file(f.path, stop)
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
    candidates: list[_Candidate],
    now: datetime,
    limits: Limits,
    spark: SparkReading | None = None,
) -> _Run:
    """Read each new content in path order; copies and touched paths are only noted."""
    seq, file_seq = con.execute(
        "SELECT (SELECT coalesce(max(read_seq), 0) + 1 FROM meterbook_raw.raw_events), "
        "(SELECT coalesce(max(file_seq), 0) + 1 FROM meterbook_raw.landing_files)"
    ).fetchone()
    run = _Run(seq, seq, file_seq, _recorded_pairs(con), _ingested_hashes(con))
    parse.create_macros(con)
    if spark is not None:
        _take_on_spark(con, run, candidates, now, limits, spark)
    else:
        for candidate in candidates:
            _take(con, run, candidate, now, limits)
    keys.rank_run_keys(con, run.first_seq)
    return run


def _take(
    con: duckdb.DuckDBPyConnection, run: _Run, c: _Candidate, now: datetime, limits: Limits
) -> None:
    """One landing file: read it if its content is new, note its path either way. Nothing is
    recorded of a file that was not read whole: it stays pending for a later run."""
    f = c.file
    read = _read_file(con, f, run.file_seq, run.seq, now, limits) if c.read_first else None
    sha = c.sha.result()
    new = sha is not None and sha not in run.seen
    if new and not c.read_first:
        read = _read_file(con, f, run.file_seq, run.seq, now, limits)
    why = _not_read_whole(f, sha, unread=new and read is None)
    if read is not None and (why or not new):  # its rows are of no use (copy, half-read)
        store.forget_rows_from(con, run.seq)
    if why:
        log.warning("landing file %s stays pending for the next run: %s", f.rel, why)
        return
    run.paths.append((f, sha))
    if not new:
        if (f.rel, sha) not in run.recorded:
            run.copies.append(f.rel)
        return
    lines, max_line, error = read
    con.execute(
        "INSERT INTO meterbook_raw.landing_files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [sha, f.rel, f.format_label, f.size_bytes, run.file_seq, now, lines, error],
    )
    run.files.append(IngestedFile(f.rel, sha, f.format_label, lines, error))
    run.seen.add(sha)
    run.seq += max_line + 1
    run.file_seq += 1


def _take_on_spark(
    con: duckdb.DuckDBPyConnection,
    run: _Run,
    candidates: list[_Candidate],
    now: datetime,
    limits: Limits,
    spark: SparkReading,
) -> None:
    """Every new content read at once by Spark, then recorded as `_take` records one file.

    A file's read_seq range is allotted before it is read (spark_read.line_bound), so the
    ranges have wider gaps than the DuckDB ingest's but keep path order. A copy of a content
    first met in this run is recorded only once that content is: should it not be read whole,
    the copy stays pending and a later run reads it."""
    removed = remove_unrecorded_runs(con, spark.lake)
    if removed:
        log.warning(
            "removed the lake's rows of runs with no file on record: %s", ", ".join(removed)
        )
    run.file_seq = max(run.file_seq, next_file_seq(spark.lake))
    to_read, copies = [], []
    for c in candidates:
        sha = c.sha.result()
        if sha is None:
            log.warning("landing file %s stays pending for the next run: %s", c.file.rel,
                        "it could not be hashed")  # fmt: skip
        elif sha in run.seen:
            copies.append((c.file, sha))
        else:
            to_read.append((FileToRead(c.file, run.file_seq, run.seq), sha))
            run.seen.add(sha)
            run.seq += line_bound(c.file, limits) + 1
            run.file_seq += 1
    recorded = _read_and_record_on_spark(con, run, to_read, now, limits, spark)
    for f, sha in copies:
        if sha in recorded or sha not in {s for _, s in to_read}:
            run.paths.append((f, sha))
            if (f.rel, sha) not in run.recorded:
                run.copies.append(f.rel)


def _read_and_record_on_spark(
    con: duckdb.DuckDBPyConnection,
    run: _Run,
    to_read: list[tuple[FileToRead, str]],
    now: datetime,
    limits: Limits,
    spark: SparkReading,
) -> set[str]:
    """Read `to_read` on Spark and record the files read whole; returns their hashes."""
    if not to_read:
        return set()
    out = run_folder(spark.lake, to_read[0][0].file_seq, to_read[-1][0].file_seq)
    read_on_spark(spark.session(), [t for t, _ in to_read], now, limits, out)
    rows = f"read_parquet({quote_literal(f'{out}/**/*.parquet')}, hive_partitioning = false)"
    found = {
        file_seq: (lines, error, not_read)
        for file_seq, lines, error, not_read in con.execute(
            f"SELECT file_seq, count(*) FILTER (line_no > 0), max(raw_line) FILTER (line_no = 0), "
            f"bool_or(line_no = {NOT_READ}) FROM {rows} GROUP BY file_seq"
        ).fetchall()
    } if any(out.rglob("*.parquet")) else {}  # fmt: skip
    recorded = {}
    for t, sha in to_read:
        lines, error, not_read = found.get(t.file_seq, (0, None, False))
        why = _not_read_whole(t.file, sha, unread=not_read)
        if why:
            log.warning("landing file %s stays pending for the next run: %s", t.file.rel, why)
            continue
        lines = 1 if error is not None else lines
        con.execute(
            "INSERT INTO meterbook_raw.landing_files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [sha, t.file.rel, t.file.format_label, t.file.size_bytes, t.file_seq, now, lines,
             error],
        )  # fmt: skip
        run.files.append(IngestedFile(t.file.rel, sha, t.file.format_label, lines, error))
        run.paths.append((t.file, sha))
        recorded[sha] = t.file_seq
    if recorded:
        _copy_committed_rows(con, rows, list(recorded.values()))
    return set(recorded)


def _copy_committed_rows(con: duckdb.DuckDBPyConnection, rows: str, file_seqs: list[int]) -> None:
    """The recorded files' rows into raw_events; the lake keeps them for Spark's own models,
    and `spark_read_files` says so."""
    files = "(SELECT file_seq, error FROM meterbook_raw.landing_files WHERE file_seq IN " + (
        f"({', '.join(str(int(s)) for s in file_seqs)}))"
    )
    committed = COMMITTED_ROWS.format(columns="r.*", rows=rows, files=files)
    con.execute(
        "INSERT INTO meterbook_raw.raw_events (read_seq, file_seq, path, line_no, event_id, "
        "customer_id, event_name, event_ts, properties, source, parse_reason, raw_line, "
        "ingested_at) SELECT read_seq, file_seq, path, line_no, event_id, customer_id, "
        "event_name, event_ts, CAST(properties AS JSON), source, parse_reason, raw_line, "
        f"ingested_at FROM ({committed})"
    )
    con.execute(
        "INSERT INTO meterbook_raw.spark_read_files SELECT unnest(?::BIGINT[])", [file_seqs]
    )


def _not_read_whole(f: LandingFile, sha: str | None, unread: bool) -> str | None:
    """Why the file's hash and read may not be of the bytes listed (None: they are). A file
    caught mid-write would otherwise be recorded as new content at each snapshot (a cell cut
    at `9` of `900000` billed 9), and one that vanished as one malformed line whose bytes,
    dropped again under any name, would never be read."""
    if sha is None:
        return "it could not be hashed"
    if unread:
        return "it could not be read"
    try:
        stat = os.stat(f.path)
    except OSError as exc:
        return f"it vanished while it was read ({exc.strerror})"
    if (stat.st_size, stat.st_mtime_ns) != (f.size_bytes, f.mtime_ns):
        return "it changed while it was read (still being written?)"
    return None


def _read_file(
    con: duckdb.DuckDBPyConnection,
    f: LandingFile,
    file_seq: int,
    seq_base: int,
    now: datetime,
    limits: Limits,
) -> tuple[int, int, str | None] | None:
    """Append one file's rows (read_seq = seq_base + line); returns (lines read, the highest
    line number, the error that made the file unreadable as a whole), or None (nothing
    appended) when the file cannot be read right now."""
    lines, max_line = 0, 0
    params = {"now": now, "seq_base": seq_base}
    try:
        for batch in read_batches(con, f, limits):
            con.register(parse.SOURCE, batch.table)
            try:
                query = parse.parse_query(batch.docs_sql)
                lines += store.append_batch(con, query, params, file_seq, f.rel)
            finally:
                with suppress(duckdb.Error):  # keep the error that got us here
                    con.unregister(parse.SOURCE)
            max_line = max(max_line, batch.max_line)
    except FileNotReadable as exc:
        log.warning("cannot read landing file %s now: %s", f.rel, exc)
        store.forget_rows_from(con, seq_base)
        return None
    except UnreadableFile as exc:
        log.warning("landing file %s is unreadable: %s", f.rel, exc)
        store.forget_rows_from(con, seq_base)
        store.append_unreadable(con, seq_base, file_seq, f.rel, str(exc), now)
        return 1, max_line, str(exc)
    return lines, max_line, None


def _record_paths(
    con: duckdb.DuckDBPyConnection, paths: list[tuple[LandingFile, str]], now: datetime
) -> None:
    rows = [(f.rel, sha, now, f.size_bytes, f.mtime_ns) for f, sha in paths]
    if not rows:  # every file stayed pending
        return
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
