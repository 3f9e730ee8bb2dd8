"""Spark's ingest allots each file its read_seq range before reading it (spark_read.py):
no line number of a file may exceed its bound, or two files' rows would share read_seqs."""

from __future__ import annotations

import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import event, jsonl

from orchestration.ingest.discovery import list_landing_files
from orchestration.ingest.readers import Limits
from orchestration.ingest.spark_read import line_bound

LIMITS = Limits(max_decompressed_bytes=1 << 20)


def bound_and_lines(landing, rel: str, data: bytes) -> tuple[int, int]:
    landing.write(rel, data)
    (file,) = [f for f in list_landing_files(landing.dir) if f.rel == rel]
    landing.ingest()
    ((last,),) = landing.rows(
        "SELECT max(line_no) FROM meterbook_raw.raw_events WHERE path = ?", [rel]
    )
    return line_bound(file, LIMITS), last


@pytest.mark.parametrize(
    ("rel", "data"),
    [
        ("blank-lines.jsonl", b"\n" * 50 + jsonl(event("e1")).encode()),
        ("one-byte-lines.csv", b"event_id\n" + b"1\n" * 40),
        ("array.json", b"[" + b",".join([b"1"] * 30) + b"]"),
        ("lines.jsonl.gz", gzip.compress(b"\n" * 5000 + jsonl(event("e1")).encode())),
    ],
)
def test_no_line_number_exceeds_the_files_bound(landing, rel, data):
    bound, last = bound_and_lines(landing, rel, data)
    assert last <= bound


def test_a_parquet_files_bound_is_its_row_count_whatever_its_size(landing):
    # a million equal rows compress to a few kilobytes: the size bounds nothing
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"event_id": pa.array(["e1"] * 1_000_000)}), sink)
    data = sink.getvalue().to_pybytes()
    assert len(data) < 100_000
    bound, last = bound_and_lines(landing, "many.parquet", data)
    assert last == bound == 1_000_000


def test_a_broken_files_bound_covers_its_one_row(landing):
    bound, last = bound_and_lines(landing, "cut.parquet", b"PAR1 not really")
    assert last == 0 < bound
