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

from orchestration.ingest import parse
from orchestration.ingest.discovery import LandingFile
from orchestration.ingest.records import (
    BOM,
    DEFAULT_CHUNK_BYTES,
    DEFAULT_MAX_DECOMPRESSED_BYTES,
    DEFAULT_MAX_LINE_BYTES,
    ROW_GROUP_ROWS,
    TOO_LONG,
    is_too_long,
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
class Limits:
    """How a file is read: input bytes per batch, and the caps of the catalog's settings."""

    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES


@dataclass(frozen=True)
class Batch:
    docs_sql: str  # reads parse.SOURCE, gives (line_no, doc, raw_text)
    table: pa.Table
    max_line: int  # the highest line number in the batch


def read_batches(
    con: duckdb.DuckDBPyConnection, file: LandingFile, limits: Limits = Limits()
) -> Iterator[Batch]:
    """The file's records in file order; raises UnreadableFile when the file is broken."""
    try:
        if file.format == "parquet":
            yield from _parquet_batches(con, file, limits)
        elif file.format == "json" and _starts_with_bracket(file):
            yield from _json_array_batches(con, file, limits)
        elif file.format == "csv":
            yield from _csv_batches(_record_tables(file, True, limits))
        else:
            yield from _json_lines_batches(_record_tables(file, False, limits))
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


def _record_tables(file: LandingFile, csv_quoting: bool, limits: Limits) -> Iterator[pa.Table]:
    header = 1 if csv_quoting else 0
    if not file.gzipped:
        yield from iter_file_records(
            file.path, csv_quoting, limits.chunk_bytes, header, limits.max_line_bytes
        )
        return
    with _decompressed(file, limits) as stream:
        yield from iter_records(
            stream, csv_quoting, limits.chunk_bytes, header, limits.max_line_bytes
        )


class _CappedStream:
    """A decompressed stream that fails the file once it gives more than `cap` bytes: a gzip
    bomb (7 GB in 33 s) is rejected as a whole file, and never held in memory."""

    def __init__(self, stream: BinaryIO, cap: int, label: str) -> None:
        self.stream, self.cap, self.label, self.total = stream, cap, label, 0

    def _count(self, got: int) -> int:
        self.total += got
        if self.total > self.cap:
            raise UnreadableFile(
                f"cannot read {self.label}: it decompresses to more than {self.cap} bytes "
                f"(max_decompressed_bytes)"
            )
        return got

    def readinto(self, buffer) -> int:
        return self._count(self.stream.readinto(buffer))

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size if size >= 0 else self.cap + 1 - self.total)
        self._count(len(data))
        return data


@contextmanager
def _decompressed(file: LandingFile, limits: Limits) -> Iterator[_CappedStream]:
    with gzip.open(file.path, "rb") as stream:
        yield _CappedStream(stream, limits.max_decompressed_bytes, file.format_label)


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


def _line_batch(docs_sql: str, table: pa.Table) -> Batch:
    """A batch of records, or of records too long to read (records.py): malformed lines."""
    return _batch(parse.too_long_docs() if is_too_long(table) else docs_sql, table)


def _json_lines_batches(tables: Iterator[pa.Table]) -> Iterator[Batch]:
    docs = parse.json_lines_docs()
    for table in tables:
        yield _line_batch(docs, table)


def _csv_batches(tables: Iterator[pa.Table]) -> Iterator[Batch]:
    """The header is the first non-blank record. Records too long to read come in tables of
    their own: until the header is found they are held, and one that comes before it means
    that the header itself was too long."""
    docs, held = None, []
    for table in tables:
        if is_too_long(table):
            if docs is None:
                held.append(table)
            else:
                yield _line_batch(docs, table)
            continue
        rest = table
        if docs is None:
            header, rest, header_line = _take_header(table)
            if header is None:
                continue
            _check_header_before(held, header_line)
            docs = parse.csv_docs(header)
            yield from (_line_batch(docs, t) for t in held)
        if rest.num_rows:
            yield _batch(docs, rest)
    if docs is None:
        _check_header_before(held, None)


def _check_header_before(held: list[pa.Table], header_line: int | None) -> None:
    """Raise when a record too long to read comes before the header line (None: no header)."""
    for table in held:
        lines = table.column("line_no").to_pylist()
        first = min(range(len(lines)), key=lines.__getitem__)
        if header_line is None or lines[first] < header_line:
            reason = table.column(TOO_LONG)[first].as_py()
            raise UnreadableFile(f"bad CSV header: {reason}")


def _take_header(table: pa.Table) -> tuple[list[str] | None, pa.Table, int | None]:
    """The first non-blank record is the header; the records after it are data. Also the
    header's line number."""
    raws = table.column("raw")
    for i in range(table.num_rows):  # only the leading blank lines are looped over
        text = raws[i].as_py().decode("utf-8").rstrip("\r\n")
        if text.strip():
            names = next(csv.reader(io.StringIO(text)))
            line_no = table.column("line_no")[i].as_py()
            return [name.strip() for name in names], table.slice(i + 1), line_no
    return None, table.slice(table.num_rows), None


def _parquet_batches(
    con: duckdb.DuckDBPyConnection, file: LandingFile, limits: Limits
) -> Iterator[Batch]:
    with _plain_path(file, limits) as path:
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
def _plain_path(file: LandingFile, limits: Limits) -> Iterator[Path]:
    """The file itself, or for .parquet.gz a decompressed temporary copy."""
    if not file.gzipped:
        yield file.path
        return
    with tempfile.TemporaryDirectory(prefix="meterbook-ingest-") as tmp:
        target = Path(tmp) / "file.parquet"
        with _decompressed(file, limits) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield target


def _json_array_batches(
    con: duckdb.DuckDBPyConnection, file: LandingFile, limits: Limits
) -> Iterator[Batch]:
    if file.gzipped:
        # DuckDB decompresses the array itself: its size is learnt first, reading in chunks
        with _decompressed(file, limits) as stream:
            last = _last_byte(iter(lambda: stream.read(1 << 20), b""))
    else:
        with open(file.path, "rb") as stream:
            last = _last_byte_of(stream)
    if last != b"]":
        # DuckDB's array reader takes `[{...},` as if it were closed: a cut file is billed
        raise UnreadableFile(f"cannot read {file.format_label}: the array is not closed by ']'")
    query = parse.json_array_docs_query(quote_literal(str(file.path)), file.gzipped)
    yield from _cursor_batches(con, query)


def _last_byte(chunks: Iterator[bytes]) -> bytes:
    """The last byte that is not blank of the chunks (read in order), b"" if none."""
    last = b""
    for chunk in chunks:
        stripped = chunk.rstrip(b" \t\r\n")
        if stripped:
            last = stripped[-1:]
    return last


def _last_byte_of(stream: BinaryIO) -> bytes:
    """A file's last byte that is not blank, read from its end, b"" if none."""
    end = stream.seek(0, 2)
    while end > 0:
        start = max(0, end - _PEEK_BYTES)
        stream.seek(start)
        stripped = stream.read(end - start).rstrip(b" \t\r\n")
        if stripped:
            return stripped[-1:]
        end = start
    return b""


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
