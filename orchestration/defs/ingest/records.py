"""Split a file's bytes into records without a Python loop per record.

A JSON-lines record ends at every newline (JSON escapes newlines inside strings). A CSV record
ends at a newline with an even number of quote characters before it in the record (RFC 4180
doubles quotes inside quoted cells, so parity tells whether a newline is inside a cell).

Records are handed out one window of bounded size at a time, as an Arrow table (`line_no`,
`raw`) whose values point into the bytes: no copy per record, and memory stays bounded
whatever the file size. A plain file is memory-mapped, so a window is just a range of the
map; a compressed stream is read into one reused buffer. Either way the caller must be done
with a table before asking for the next one.

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
) -> Iterator[pa.Table]:
    """Records of a plain (uncompressed) file, through a memory map."""
    with open(path, "rb") as fh:
        if fh.seek(0, 2) == 0:
            return
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    # no `with` on the map: Arrow tables may still point into it when the loop ends, and the
    # map is closed when the last of them is gone
    yield from _iter(_MappedWindow(mapped, chunk_bytes), csv_quoting, header_records)


def iter_records(
    stream: BinaryIO,
    csv_quoting: bool = False,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    header_records: int = 0,
) -> Iterator[pa.Table]:
    """Records of a stream (a gzip file), read in chunks."""
    yield from _iter(_StreamWindow(stream, chunk_bytes), csv_quoting, header_records)


def _iter(window: _Window, csv_quoting: bool, header_records: int) -> Iterator[pa.Table]:
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
            window.grow()
            continue
        if not window.eof:
            boundary_idx = _whole_row_groups(boundary_idx, header_records if first else 0)
        first = False
        table = _window_table(window, newlines, boundary_idx)
        if table.num_rows:
            yield table
        if window.eof:
            return
        window.line_base += int(boundary_idx[-1]) + 1
        window.advance(int(newlines[boundary_idx[-1]]) + 1)


def _whole_row_groups(boundary_idx: np.ndarray, extra: int) -> np.ndarray:
    """Keep the records of whole row groups (plus `extra`), when there are that many."""
    keep = (len(boundary_idx) - extra) // ROW_GROUP_ROWS * ROW_GROUP_ROWS + extra
    return boundary_idx[:keep] if keep > extra else boundary_idx


def _window_table(window: _Window, newlines: np.ndarray, boundary_idx: np.ndarray) -> pa.Table:
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
    return pa.table({"line_no": pa.array(lines[:count]), "raw": raw})
