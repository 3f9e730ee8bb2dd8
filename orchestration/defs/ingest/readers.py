"""Read one landing file as batches of records, each with the SQL that makes them JSON docs.

Line formats (JSON lines, CSV; gzipped or not) are streamed through `records.iter_records`.
Parquet files and JSON array files are read by DuckDB on a separate cursor: an error there
(a truncated file) must not abort the ingest's transaction on the main connection, and the
rows arrive as Arrow batches of bounded size either way.

A file that cannot be read as a whole raises `UnreadableFile`; the ingest records it. A file
that cannot be read right now (it vanished, permissions) raises `FileNotReadable`; it stays
pending.
"""

from __future__ import annotations

import csv
import gzip
import io
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from orchestration.defs.ingest import parse
from orchestration.defs.ingest.discovery import LandingFile
from orchestration.defs.ingest.records import (
    BOM,
    DEFAULT_CHUNK_BYTES,
    ROW_GROUP_ROWS,
    iter_file_records,
    iter_records,
)
from orchestration.sql import quote_literal

ARROW_BATCH_ROWS = 8 * ROW_GROUP_ROWS  # whole row groups, see records.py
_PEEK_BYTES = 1 << 16


class UnreadableFile(Exception):
    """The file as a whole cannot be read (corrupt gzip or Parquet, broken JSON array...)."""


class FileNotReadable(Exception):
    """The file cannot be read right now (it vanished, permissions, an I/O error): nothing is
    known about its content, so it is not recorded and a later run tries again."""


@dataclass(frozen=True)
class Batch:
    docs_sql: str  # reads parse.SOURCE, gives (line_no, doc, raw_text)
    table: pa.Table
    max_line: int  # the highest line number in the batch


def read_batches(
    con: duckdb.DuckDBPyConnection, file: LandingFile, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[Batch]:
    """The file's records in file order; raises UnreadableFile when the file is broken."""
    try:
        if file.format == "parquet":
            yield from _parquet_batches(con, file)
        elif file.format == "json" and _starts_with_bracket(file):
            yield from _cursor_batches(
                con, parse.json_array_docs_query(quote_literal(str(file.path)), file.gzipped)
            )
        elif file.format == "csv":
            yield from _csv_batches(_record_tables(file, True, chunk_bytes))
        else:
            docs = parse.json_lines_docs()
            for table in _record_tables(file, False, chunk_bytes):
                yield _batch(docs, table)
    except OSError as exc:
        # the system's errors carry an errno; a corrupt gzip (BadGzipFile) does not
        if exc.errno is not None:
            raise FileNotReadable(str(exc)) from exc
        raise UnreadableFile(f"cannot read {file.format_label}: {exc}") from exc
    except (EOFError, zlib.error) as exc:
        raise UnreadableFile(f"cannot read {file.format_label}: {exc}") from exc
    except duckdb.Error as exc:
        raise UnreadableFile(f"cannot read {file.format_label}: {_first_line(exc)}") from exc
    except (parse.ColumnLayoutError, UnicodeDecodeError) as exc:
        raise UnreadableFile(f"bad CSV header: {exc}") from exc


def _record_tables(file: LandingFile, csv_quoting: bool, chunk_bytes: int) -> Iterator[pa.Table]:
    header = 1 if csv_quoting else 0
    if not file.gzipped:
        yield from iter_file_records(file.path, csv_quoting, chunk_bytes, header)
        return
    with gzip.open(file.path, "rb") as stream:
        yield from iter_records(stream, csv_quoting, chunk_bytes, header)


def _open(file: LandingFile) -> BinaryIO:
    if file.gzipped:
        return gzip.open(file.path, "rb")
    return open(file.path, "rb", buffering=0)


def _starts_with_bracket(file: LandingFile) -> bool:
    """A .json file is one array when its first non-blank character is '['."""
    with _open(file) as stream:
        head = stream.read(_PEEK_BYTES).removeprefix(BOM).lstrip(b" \t\r\n")
    return head.startswith(b"[")


def _batch(docs_sql: str, table: pa.Table) -> Batch:
    return Batch(docs_sql, table, int(pc.max(table.column("line_no")).as_py() or 0))


def _csv_batches(tables: Iterator[pa.Table]) -> Iterator[Batch]:
    docs = None
    for table in tables:
        rest = table
        if docs is None:
            header, rest = _take_header(table)
            if header is None:
                continue
            docs = parse.csv_docs(header)
        if rest.num_rows:
            yield _batch(docs, rest)


def _take_header(table: pa.Table) -> tuple[list[str] | None, pa.Table]:
    """The first non-blank record is the header; the records after it are data."""
    raws = table.column("raw")
    for i in range(table.num_rows):  # only the leading blank lines are looped over
        text = raws[i].as_py().decode("utf-8").rstrip("\r\n")
        if text.strip():
            names = next(csv.reader(io.StringIO(text)))
            return [name.strip() for name in names], table.slice(i + 1)
    return None, table.slice(table.num_rows)


def _parquet_batches(con: duckdb.DuckDBPyConnection, file: LandingFile) -> Iterator[Batch]:
    with _plain_path(file) as path:
        literal = quote_literal(str(path))
        cur = con.cursor()
        try:
            described = cur.execute(f"DESCRIBE SELECT * FROM read_parquet({literal})").fetchall()
        finally:
            cur.close()
        columns = [(row[0], row[1]) for row in described]
        try:
            query = parse.parquet_docs_query(literal, columns)
        except parse.ColumnLayoutError as exc:
            raise UnreadableFile(f"bad Parquet columns: {exc}") from exc
        yield from _cursor_batches(con, query)


@contextmanager
def _plain_path(file: LandingFile) -> Iterator[Path]:
    """The file itself, or for .parquet.gz a decompressed temporary copy."""
    if not file.gzipped:
        yield file.path
        return
    with tempfile.TemporaryDirectory(prefix="meterbook-ingest-") as tmp:
        target = Path(tmp) / "file.parquet"
        with gzip.open(file.path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield target


def _cursor_batches(con: duckdb.DuckDBPyConnection, query: str) -> Iterator[Batch]:
    cur = con.cursor()
    try:
        cur.execute("SET TimeZone = 'UTC'")
        reader = cur.sql(query).to_arrow_reader(ARROW_BATCH_ROWS)
        docs = parse.object_docs()
        for record_batch in reader:
            table = pa.Table.from_batches([record_batch])
            if table.num_rows:
                yield _batch(docs, table)
    finally:
        cur.close()


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
