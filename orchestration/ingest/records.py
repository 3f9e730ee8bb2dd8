"""Split a file's bytes into records without a Python loop per record.

A JSON-lines record ends at every newline (JSON escapes newlines inside strings). A CSV record
ends at a newline with an even number of quote characters before it in the record (RFC 4180
doubles quotes inside quoted cells, so parity tells whether a newline is inside a cell).

Records are handed out one window of bounded size at a time, as an Arrow table (`line_no`,
`raw`) whose values point into the bytes: no copy per record, and memory stays bounded
whatever the file size. A plain file is memory-mapped, so a window is just a range of the
map; a compressed stream is read into one reused buffer. Either way the caller must be done
with a table before asking for the next one.

A record longer than `max_line_bytes` (its newline and a CR before it not counted) is not
handed out: it comes in a table of its own, (`line_no`, `too_long`: the reason, with its size),
and the reader makes it one malformed line. One that does not fit a window is skipped to its
end while its bytes, newlines and quotes are counted, so it is never held in memory (a 200 MB
line no longer exhausts memory inside the ingest's transaction, failing every later run the
same way). Finding the long records among the others is one vectorised length test per window.

`raw` keeps each record's trailing newline (and a CR before it); the SQL that reads it trims
them. `line_no` is the physical line a record starts on (1-based), so blank lines and cells
spanning lines keep the numbering true to the file. A UTF-8 byte order mark at the start of
the file is dropped.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa

NEWLINE = 10
QUOTE = 34
BOM = b"\xef\xbb\xbf"
DEFAULT_CHUNK_BYTES = 128 << 20
# DuckDB's row group. A window hands out a whole number of row groups' worth of records (the
# rest waits for the next window): an append that leaves a row group half full makes DuckDB
# rewrite every row group appended after it at the next checkpoint.
ROW_GROUP_ROWS = 122_880
_SCAN_BLOCK = 1 << 20  # bytes compared at a time: a small reused mask stays in cache
# the defaults of the catalog's settings (orchestration/catalog/models.py, Settings)
DEFAULT_MAX_LINE_BYTES = 10_000_000
DEFAULT_MAX_DECOMPRESSED_BYTES = 64 << 30
TOO_LONG = "too_long"  # the column of a table of records longer than max_line_bytes
CR = 13


class _Window:
    """Bytes buf[lo:hi] not yet split; `line_base` newlines lie before buf[lo]."""

    def __init__(self, chunk_bytes: int) -> None:
        self.chunk_bytes = max(chunk_bytes, 4)  # the first window must see a whole BOM
        self.buf = np.empty(0, dtype=np.uint8)
        self.lo = self.hi = 0
        self.eof = False
        self.line_base = 0
        self._mask = np.empty(_SCAN_BLOCK, dtype=np.bool_)

    def skip_bom(self) -> None:
        if self.hi - self.lo >= 3 and bytes(self.buf[self.lo : self.lo + 3]) == BOM:
            self.lo += 3

    def find(self, byte: int) -> np.ndarray:
        """Positions of `byte` in buf[lo:hi], in order."""
        found = []
        for start in range(self.lo, self.hi, _SCAN_BLOCK):
            stop = min(start + _SCAN_BLOCK, self.hi)
            mask = self._mask[: stop - start]
            np.equal(self.buf[start:stop], byte, out=mask)
            found.append(np.flatnonzero(mask) + start)
        return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


class _MappedWindow(_Window):
    """A memory-mapped plain file: windows are ranges of the map, nothing is copied."""

    def __init__(self, mapped: mmap.mmap, chunk_bytes: int) -> None:
        super().__init__(chunk_bytes)
        self.map = mapped
        self.buf = np.frombuffer(mapped, dtype=np.uint8)
        self.released = 0

    def fill(self) -> None:
        self.hi = min(self.lo + self.chunk_bytes, len(self.buf))
        self.eof = self.hi == len(self.buf)

    def grow(self) -> None:
        self.chunk_bytes *= 2

    def advance(self, pos: int) -> None:
        self.lo = pos
        # the pages already split are not needed again: drop them from this process's memory
        # (they stay in the page cache, and would simply be read again if touched)
        upto = pos // mmap.PAGESIZE * mmap.PAGESIZE
        if upto > self.released and hasattr(mmap, "MADV_DONTNEED"):
            self.map.madvise(mmap.MADV_DONTNEED, self.released, upto - self.released)
            self.released = upto


class _StreamWindow(_Window):
    """A stream (gzip): read into one reused buffer, the unfinished record carried over."""

    def __init__(self, stream: BinaryIO, chunk_bytes: int) -> None:
        super().__init__(chunk_bytes)
        self.stream = stream
        self.buf = np.empty(self.chunk_bytes, dtype=np.uint8)

    def fill(self) -> None:
        view = memoryview(self.buf)
        while self.hi < len(self.buf):
            got = self.stream.readinto(view[self.hi :])
            if not got:
                self.eof = True
                break
            self.hi += got

    def grow(self) -> None:
        bigger = np.empty(len(self.buf) * 2, dtype=np.uint8)
        bigger[: self.hi] = self.buf[: self.hi]
        self.buf = bigger

    def advance(self, pos: int) -> None:
        rest = self.buf[pos : self.hi].copy()
        self.buf[: len(rest)] = rest
        self.lo, self.hi = 0, len(rest)


def iter_file_records(
    path: Path,
    csv_quoting: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    header_records: int = 0,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[pa.Table]:
    """Records of a plain (uncompressed) file, through a memory map."""
    with open(path, "rb") as fh:
        if fh.seek(0, 2) == 0:
            return
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    # no `with` on the map: Arrow tables may still point into it when the loop ends, and the
    # map is closed when the last of them is gone
    window = _MappedWindow(mapped, chunk_bytes)
    yield from _iter(window, csv_quoting, header_records, max_line_bytes)


def iter_records(
    stream: BinaryIO,
    csv_quoting: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    header_records: int = 0,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
) -> Iterator[pa.Table]:
    """Records of a stream (a gzip file), read in chunks."""
    window = _StreamWindow(stream, chunk_bytes)
    yield from _iter(window, csv_quoting, header_records, max_line_bytes)


def is_too_long(table: pa.Table) -> bool:
    """A table of records longer than max_line_bytes (line_no, too_long)."""
    return TOO_LONG in table.column_names


def _iter(
    window: _Window, csv_quoting: bool, header_records: int, max_line_bytes: int
) -> Iterator[pa.Table]:
    """`header_records` (a CSV header) are not data: the first window holds that many more."""
    first = True
    while True:
        window.fill()
        if first:
            window.skip_bom()
        newlines = window.find(NEWLINE)
        boundary_idx = np.arange(len(newlines))
        if csv_quoting and len(newlines):
            quotes = window.find(QUOTE)
            boundary_idx = np.flatnonzero(np.searchsorted(quotes, newlines) % 2 == 0)
        if not len(boundary_idx) and not window.eof:
            if window.hi - window.lo > max_line_bytes:  # growing the window would not end
                first = False
                yield _skip_long_record(window, csv_quoting, max_line_bytes)
            else:
                window.grow()
            continue
        if not window.eof:
            boundary_idx = _whole_row_groups(boundary_idx, header_records if first else 0)
        first = False
        table, offsets = _window_table(window, newlines, boundary_idx)
        if table.num_rows:
            yield from _split_long_records(table, offsets, window.buf, max_line_bytes)
        if window.eof:
            return
        window.line_base += int(boundary_idx[-1]) + 1
        window.advance(int(newlines[boundary_idx[-1]]) + 1)


def _whole_row_groups(boundary_idx: np.ndarray, extra: int) -> np.ndarray:
    """Keep the records of whole row groups (plus `extra`), when there are that many."""
    keep = (len(boundary_idx) - extra) // ROW_GROUP_ROWS * ROW_GROUP_ROWS + extra
    return boundary_idx[:keep] if keep > extra else boundary_idx


def _window_table(
    window: _Window, newlines: np.ndarray, boundary_idx: np.ndarray
) -> tuple[pa.Table, np.ndarray]:
    """The window's records, and their offsets in window.buf (one more than records)."""
    ends = newlines[boundary_idx] + 1  # each record keeps its newline
    lines = np.empty(len(boundary_idx) + 1, dtype=np.int64)
    lines[0] = window.line_base + 1
    lines[1:] = window.line_base + boundary_idx + 2
    offsets = np.empty(len(ends) + 2, dtype=np.int64)
    offsets[0] = window.lo
    offsets[1 : len(ends) + 1] = ends
    count = len(ends)
    if window.eof and window.hi > int(offsets[count]):  # a last record without a newline
        offsets[count + 1] = window.hi
        count += 1
    raw = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(),
        count,
        [None, pa.py_buffer(offsets[: count + 1]), pa.py_buffer(window.buf)],
    )
    table = pa.table({"line_no": pa.array(lines[:count]), "raw": raw})
    return table, offsets[: count + 1]


def _split_long_records(
    table: pa.Table, offsets: np.ndarray, buf: np.ndarray, max_line_bytes: int
) -> Iterator[pa.Table]:
    """The table, or when some records are longer than `max_line_bytes`: a table of the long
    ones, then the others (a CSV reader learns of a too long header before it takes a later
    record for the header). Only the rare window that has one does more than the test."""
    sizes = np.diff(offsets)  # newline included: a record may be up to 2 bytes over
    candidates = np.flatnonzero(sizes > max_line_bytes)
    if not len(candidates):
        yield table
        return
    sizes = _content_sizes(buf, offsets[candidates], offsets[candidates + 1])
    long_idx = candidates[sizes > max_line_bytes]
    if not len(long_idx):
        yield table
        return
    line_nos = table.column("line_no").to_numpy()[long_idx]
    yield _too_long_table(line_nos, sizes[sizes > max_line_bytes], max_line_bytes)
    keep = np.ones(table.num_rows, dtype=np.bool_)
    keep[long_idx] = False
    rest = table.filter(pa.array(keep))
    if rest.num_rows:
        yield rest


def _content_sizes(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Sizes of the records buf[start:end] without their newline and a CR before it."""
    sizes = ends - starts
    newline = (sizes > 0) & (buf[np.maximum(ends - 1, starts)] == NEWLINE)
    sizes = sizes - newline
    cr = newline & (sizes > 0) & (buf[np.maximum(starts + sizes - 1, starts)] == CR)
    return sizes - cr


def _too_long_table(line_nos, sizes, max_line_bytes: int) -> pa.Table:
    reasons = [f"line of {int(n)} bytes exceeds max_line_bytes {max_line_bytes}" for n in sizes]
    return pa.table(
        {"line_no": pa.array(np.asarray(line_nos, dtype=np.int64)), TOO_LONG: pa.array(reasons)}
    )


def _skip_long_record(window: _Window, csv_quoting: bool, max_line_bytes: int) -> pa.Table:
    """Skip the record at window.lo, which is longer than the window, to its end (the window
    then starts at the next record); its bytes, newlines and quotes are counted, not kept."""
    line_no = window.line_base + 1
    size = newlines_inside = quotes = 0
    tail = b""  # its last bytes, to leave the line ending out of its size
    while True:
        end, newlines_before, quotes_here = _record_end(window, csv_quoting, quotes)
        stop = window.hi if end is None else end + 1
        size += stop - window.lo
        tail = (tail + bytes(window.buf[max(window.lo, stop - 2) : stop]))[-2:]
        newlines_inside += newlines_before
        quotes += quotes_here
        if end is not None or window.eof:
            break
        window.advance(window.hi)
        window.fill()
    if end is not None:
        window.line_base += newlines_inside + 1
    window.advance(stop)
    return _too_long_table([line_no], [size - _line_ending(tail)], max_line_bytes)


def _line_ending(tail: bytes) -> int:
    """How many of a record's last bytes are its line ending: a newline and a CR before it."""
    if not tail.endswith(b"\n"):
        return 0
    return 2 if tail.endswith(b"\r\n") else 1


def _record_end(
    window: _Window, csv_quoting: bool, quotes_before: int
) -> tuple[int | None, int, int]:
    """(the position of the newline ending the record in buf[lo:hi] or None, the newlines
    before it in the window, the quotes in the window) for a record that started earlier with
    `quotes_before` quotes."""
    newlines = window.find(NEWLINE)
    if not csv_quoting:
        if len(newlines):
            return int(newlines[0]), 0, 0
        return None, 0, 0
    quotes = window.find(QUOTE)
    ends = np.flatnonzero((np.searchsorted(quotes, newlines) + quotes_before) % 2 == 0)
    if len(ends):
        return int(newlines[ends[0]]), int(ends[0]), len(quotes)
    return None, len(newlines), len(quotes)
