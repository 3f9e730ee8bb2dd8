"""Landing files read by Spark (settings.warehouse: spark): the parse runs in its executors.

Spark hands each new file to one task; the task reads it with this package's own readers and
checks it with the same SQL as the DuckDB ingest (readers.py, sql/parse_records.sql, in an
in-memory DuckDB of the task's own), so every line gets the same fate, line number and
raw_line on both engines by construction rather than by a second implementation to keep
equal. Spark's writer then stores the rows as Parquet partitioned by the event's UTC day
(`event_date`; rows without a timestamp in Spark's default partition), one folder per ingest
run under the lake's `raw_events/` (`ingest=<first file_seq>-<last file_seq>`).

A task never holds a file in memory: its rows leave as they are parsed. So a file found
unreadable half-way has left the rows before the problem; the task then adds the file's
`line_no = 0` row, and whoever reads the folder keeps, of a file with an error, only that row
(warehouse/lake.py: `COMMITTED_ROWS`, which the ingest and the Spark stage apply). A file that cannot be read right
now (it vanished, permissions) leaves one row `line_no = -1`: the ingest leaves it pending and
records nothing of it.

What is on record is decided by the DuckDB warehouse's `landing_files` (ingest.py): a folder
written by a run that then failed is never read, as no recorded file has its file_seqs
(they are allocated past every folder's, `next_file_seq`), and the next Spark ingest removes
it (`remove_unrecorded_runs`); `spark_read_files` names the files whose rows are in the lake
(the Spark stage reads the lake only when that is all).
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa

from orchestration.ingest import parse
from orchestration.ingest.discovery import LandingFile
from orchestration.ingest.readers import (
    ARROW_BATCH_ROWS,
    FileNotReadable,
    Limits,
    UnreadableFile,
    read_batches,
)

NOT_READ = -1  # line_no of the row that says a task could not read its file right now
MAX_FILE_ROWS = 10_000_000  # rows of one Parquet file the ingest writes

# the rows as a task hands them to Spark (properties as text: Spark has no JSON type)
ARROW_SCHEMA = pa.schema(
    [
        ("read_seq", pa.int64()),
        ("file_seq", pa.int64()),
        ("path", pa.string()),
        ("line_no", pa.int64()),
        ("event_id", pa.string()),
        ("customer_id", pa.string()),
        ("event_name", pa.string()),
        ("event_ts", pa.timestamp("us", tz="UTC")),
        ("properties", pa.string()),
        ("source", pa.string()),
        ("parse_reason", pa.string()),
        ("raw_line", pa.string()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
        ("event_date", pa.date32()),
    ]
)
_PARSED = (
    "SELECT read_seq, $file_seq AS file_seq, $path AS path, line_no, event_id, customer_id, "
    "event_name, event_ts, CAST(properties AS VARCHAR) AS properties, source, parse_reason, "
    "raw_line, $now AS ingested_at, CAST(timezone('UTC', event_ts) AS DATE) AS event_date "
    "FROM ({query})"
)


@dataclass(frozen=True)
class SparkReading:
    """How an ingest reads on Spark: the session (started only when a file is to be read: a
    JVM takes seconds), and the lake folder its rows go to."""

    session: Callable[[], object]  # -> a pyspark.sql.SparkSession
    lake: Path


@dataclass(frozen=True)
class FileToRead:
    file: LandingFile
    file_seq: int
    seq_base: int  # read_seq = seq_base + line number


def line_bound(file: LandingFile, limits: Limits) -> int:
    """No line number of `file` exceeds this, known before it is read (its read_seq range).

    A line takes at least a byte, so a plain file has at most size + 1 lines; a gzip file
    decompresses to at most max_decompressed_bytes or is unreadable (one row); a Parquet
    file's row count is in its footer (a broken footer: unreadable)."""
    if file.format == "parquet" and not file.gzipped:
        import pyarrow.parquet as pq  # noqa: PLC0415

        try:
            return max(pq.ParquetFile(file.path).metadata.num_rows, 1)
        except Exception:  # noqa: BLE001 (whatever breaks the footer: the reader says what)
            return 1
    if file.gzipped:
        return limits.max_decompressed_bytes + 1
    return file.size_bytes + 1


def read_on_spark(spark, files: list[FileToRead], now: datetime, limits: Limits, out: Path) -> None:
    """Every file of `files` parsed by one Spark task, the rows written as Parquet under `out`
    (partitioned by `event_date`), which must not exist yet."""
    if out.exists():  # a folder of a run that failed before its files were recorded
        shutil.rmtree(out)
    spark.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
    # one file a task: task i reads files[i] (a range of one number a partition, which a
    # Spark Connect session has too: it has no SparkContext to parallelize the list with)
    tasks = spark.range(0, len(files), 1, len(files))

    def parse_partition(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return _parse_tasks(batches, files, now, limits)

    from pyspark.sql.pandas.types import from_arrow_schema  # noqa: PLC0415 (the spark extra)

    parsed = tasks.mapInArrow(parse_partition, from_arrow_schema(ARROW_SCHEMA))
    # a day's rows from every task gathered, so that a day is a few files, not one per file
    # read (16 files of a month's events wrote 496 Parquet files of 2,000 rows each, which
    # every later Spark step listed and opened; the 1M-event close took 278 s that way and
    # 251 s gathered, one run each); files of at most MAX_FILE_ROWS rows
    by_day = parsed.repartition("event_date")
    by_day.write.option("maxRecordsPerFile", MAX_FILE_ROWS).partitionBy("event_date").parquet(
        str(out)
    )


def _parse_tasks(
    batches: Iterator[pa.RecordBatch], files: list[FileToRead], now: datetime, limits: Limits
) -> Iterator[pa.RecordBatch]:
    """The rows of the files whose positions in `files` the batches hold (column `id`)."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        parse.create_macros(con)
        for batch in batches:
            for i in batch.column("id").to_pylist():
                yield from parse_file(con, files[i], now, limits)
    finally:
        con.close()


def parse_file(
    con: duckdb.DuckDBPyConnection, f: FileToRead, now: datetime, limits: Limits
) -> Iterator[pa.RecordBatch]:
    """One file's rows as Arrow batches of ARROW_SCHEMA, as they are parsed; an unreadable
    file ends with its line 0, one not readable now with its line NOT_READ."""
    params = {"now": now, "seq_base": f.seq_base, "file_seq": f.file_seq, "path": f.file.rel}
    try:
        for batch in read_batches(con, f.file, limits):
            con.register(parse.SOURCE, batch.table)
            try:
                query = _PARSED.format(query=parse.parse_query(batch.docs_sql))
                reader = con.sql(query, params=params).to_arrow_reader(ARROW_BATCH_ROWS)
                yield from (rows.cast(ARROW_SCHEMA) for rows in reader)
            finally:
                with suppress(duckdb.Error):
                    con.unregister(parse.SOURCE)
    except FileNotReadable as exc:
        print(f"cannot read landing file {f.file.rel} now: {exc}", file=sys.stderr)
        yield _file_row(f, NOT_READ, str(exc), now)
    except UnreadableFile as exc:
        yield _file_row(f, 0, str(exc), now)


def _file_row(f: FileToRead, line_no: int, error: str, now: datetime) -> pa.RecordBatch:
    row = dict.fromkeys(ARROW_SCHEMA.names)
    row.update(read_seq=f.seq_base + max(line_no, 0), file_seq=f.file_seq, path=f.file.rel,
               line_no=line_no, parse_reason="malformed", raw_line=error[:4096], ingested_at=now)  # fmt: skip
    return pa.RecordBatch.from_pylist([row], schema=ARROW_SCHEMA)
