"""Spark's ingest reads the landing files exactly as the DuckDB ingest does (issue 29, item 2).

One landing folder of every awkward input the ingest tests know (every format, plain and
gzip, BOM and CRLF, the fuzz generator's odd values, long lines, unreadable files, a gzip
file cut after its first batch, copies, repeated keys) is ingested by both engines, in two
runs; every stored row must be the same but its read_seq (Spark allots a file's range before
reading it), and so must the files on record, their paths, the repeated keys with their ranks
and hashes, and what each run reports. The rows Spark keeps in the lake (partitioned by event
day) are those rows again.
"""

from __future__ import annotations

import gzip
import json
import random
import sys
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from orchestration.catalog.models import Settings
from orchestration.defs.ingest.assets import _spark_reading
from orchestration.ingest.ingest import run_ingest
from orchestration.ingest.spark_read import ARROW_SCHEMA, SparkReading
from orchestration.sql import connect, quote_literal
from orchestration.warehouse.lake import COMMITTED_ROWS, RAW_EVENTS_FOLDER, lake_holds_raw_events
from orchestration.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ingest"))
from ingest_helpers import event, jsonl  # noqa: E402
from test_ingest_fuzz import odd_event  # noqa: E402

NOW = datetime(2026, 11, 6, tzinfo=UTC)
LATER = datetime(2026, 11, 7, tzinfo=UTC)
LIMITS = {"chunk_bytes": 1 << 16, "max_line_bytes": 4096}  # several batches, a long line
ROWS = (
    "SELECT file_seq, path, line_no, event_id, customer_id, event_name, event_ts, "
    "CAST(properties AS VARCHAR), source, parse_reason, raw_line, ingested_at "
    "FROM meterbook_raw.raw_events ORDER BY path, line_no"
)
KEYS = (
    "SELECT r.path, r.line_no, k.key_rank, k.payload_hash, k.customer_id, k.event_id "
    "FROM meterbook_raw.repeated_events AS k JOIN meterbook_raw.raw_events AS r USING (read_seq) "
    "ORDER BY r.path, r.line_no"
)
FILES = "SELECT * FROM meterbook_raw.landing_files ORDER BY file_seq"
PATHS = (
    "SELECT path, file_sha256, first_seen_at, size_bytes, mtime_ns "
    "FROM meterbook_raw.landing_file_paths ORDER BY path, file_sha256"
)


def _parquet(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def first_run_files() -> dict[str, bytes]:
    rng = random.Random(29)
    odd = b"\n".join(odd_event(rng) for _ in range(400)) + b"\n"
    events = jsonl(*(event(f"e{i}", timestamp=f"2026-10-{1 + i % 28:02d}T10:00:00Z",
                           properties={"tokens": i}) for i in range(3000)))  # fmt: skip
    csv = (
        "event_id,customer_id,event_name,timestamp,properties.tokens,properties.note\n"
        'c1,acme,api,2026-10-02T10:00:00Z,5,"a ""quoted"" note"\n'
        'c2,acme,api,1791763200,7,"two\nlines"\n'
        "c3,acme,api,2026-10-02T10:00:00Z,x,y,z\n\n"
        'c4,acme,api,2026-10-03T10:00:00Z,1,"never closed\n'
    )
    typed = pa.table({
        "event_id": ["p1", "p2", "e5"], "customer_id": ["acme", None, "acme"],
        "event_name": ["gpu"] * 3,
        "timestamp": pa.array([datetime(2026, 10, 2, 10, tzinfo=UTC)] * 3,
                              pa.timestamp("us", tz="UTC")),
        "properties.ms": [1500, None, 3],
    })  # fmt: skip
    naive = pa.table({"event_id": ["p3"], "customer_id": ["acme"], "event_name": ["x"],
                      "timestamp": pa.array([datetime(2026, 10, 2, 10)], pa.timestamp("us"))})  # fmt: skip
    good = _parquet(typed)
    cut = gzip.compress(events.encode())
    return {
        "a/events.jsonl": events.encode(),
        "a/events.jsonl.gz": gzip.compress(events.encode()),  # a copy by content? no: other bytes
        "a/copy-of-events.jsonl": events.encode(),
        "b/odd.jsonl": odd,
        "b/odd.ndjson.gz": gzip.compress(b"\xef\xbb\xbf" + odd.replace(b"\n", b"\r\n")),
        "b/long.jsonl": jsonl(event("l1")).encode()
        + b'{"x": "'
        + b"y" * 5000
        + b'"}\n'
        + jsonl(event("l2")).encode(),
        "c/cells.csv": csv.encode(),
        "c/both.csv": b"event_id,properties,properties.a\n1,{},2\n",
        "c/cells.csv.gz": gzip.compress(csv.encode()),
        "d/array.json": json.dumps([event("j1"), event("j2", properties=[1]), 3]).encode(),
        "d/cut-array.json": b'[{"event_id": "j3"},',
        "d/lines.json": jsonl(event("j4"), event("j4")).encode(),
        "e/typed.parquet": good,
        "e/typed.parquet.gz": gzip.compress(good),
        "e/naive.parquet": _parquet(naive),
        "e/cut.parquet": good[: len(good) // 2],
        "f/noise.jsonl.gz": b"\x1f\x8b this is not gzip",
        "f/cut-after-a-batch.jsonl.gz": cut[: len(cut) - 200],
        "f/empty.jsonl": b"",
        "f/blank.csv": b"",
    }


def second_run_files() -> dict[str, bytes]:
    """Keys the first run stored repeated, a copy of its content, a new day."""
    return {
        "g/late.jsonl": jsonl(
            event("e1"),
            event("e2", properties={"tokens": 9}),
            event("n1", timestamp="2026-11-01T00:00:00Z"),
        ).encode(),  # fmt: skip
        "g/again.jsonl": jsonl(
            *(
                event(
                    f"e{i}",
                    timestamp=f"2026-10-{1 + i % 28:02d}T10:00:00Z",
                    properties={"tokens": i},
                )
                for i in range(3000)
            )
        ).encode(),  # fmt: skip
    }


def land(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def table(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


@pytest.mark.slow
def test_spark_reads_every_landing_file_as_duckdb_does(spark, tmp_path):
    landing = tmp_path / "landing" / "events"
    lake = tmp_path / "lake"
    duck, on_spark = connect(tmp_path / "duckdb.duckdb"), connect(tmp_path / "spark.duckdb")
    reading = SparkReading(lambda: spark, lake)
    reports = []
    for files, now in ((first_run_files(), NOW), (second_run_files(), LATER)):
        land(landing, files)
        by_duckdb = run_ingest(duck, landing, now, **LIMITS)
        by_spark = run_ingest(on_spark, landing, now, spark=reading, **LIMITS)
        assert by_spark == by_duckdb
        for sql in (ROWS, KEYS, FILES, PATHS):
            assert table(on_spark, sql) == table(duck, sql), sql
        reports.append(by_duckdb)
    # the corpus meets what it is meant to: every reason the ingest gives (SPEC 2.3's but the
    # fates' own), unreadable files, copies, keys repeated within and across runs
    reasons = "SELECT DISTINCT parse_reason FROM meterbook_raw.raw_events ORDER BY 1"
    assert table(duck, reasons) == [
        ("bad_property",), ("bad_timestamp",), ("malformed",), ("missing_field",),
        ("too_far_in_future",), (None,),
    ]  # fmt: skip
    first, second = reports
    assert sum(bool(f.error) for f in first.files) == 5 and first.skipped_copies
    assert second.skipped_copies == ["g/again.jsonl"]
    late_e1 = KEYS.replace(
        "ORDER BY", "WHERE r.path = 'g/late.jsonl' AND k.event_id = 'e1' ORDER BY"
    )
    assert [row[2] for row in table(duck, late_e1)] == [3]  # a.jsonl, a.jsonl.gz, g/late.jsonl
    assert lake_holds_raw_events(on_spark, lake)
    # the lake holds the same rows, partitioned by the event's UTC day
    rows = f"read_parquet({quote_literal(f'{lake}/{RAW_EVENTS_FOLDER}/**/*.parquet')})"
    files = "meterbook_raw.landing_files"
    kept = COMMITTED_ROWS.format(columns="r.*", rows=rows, files=files)
    in_lake = ROWS.replace("FROM meterbook_raw.raw_events", f"FROM ({kept})").replace(
        "CAST(properties AS VARCHAR)", "properties"
    )
    assert table(on_spark, in_lake) == table(duck, ROWS)
    days = {p.name for p in (lake / RAW_EVENTS_FOLDER).glob("ingest=*/event_date=*")}
    stored = table(duck, "SELECT DISTINCT CAST(event_ts AS DATE) FROM meterbook_raw.raw_events")
    assert days == {
        f"event_date={d.isoformat()}" if d else "event_date=__HIVE_DEFAULT_PARTITION__"
        for (d,) in stored
    }


@pytest.mark.slow
def test_the_rows_a_failed_run_left_are_removed_by_the_next_never_taken(spark, tmp_path):
    landing, lake = tmp_path / "landing" / "events", tmp_path / "lake"
    con = connect(tmp_path / "w.duckdb")
    land(landing, {"a.jsonl": jsonl(event("e1"), event("e2")).encode()})

    def failing_session():
        raise RuntimeError("the cluster went away")

    failing = SparkReading(failing_session, lake)
    with pytest.raises(RuntimeError, match="went away"):
        run_ingest(con, landing, NOW, spark=failing)
    # the rows of a run Spark finished but whose transaction then failed (file_seqs 1-3)
    written = pa.schema([f for f in ARROW_SCHEMA if f.name != "event_date"])  # a partition
    stale = {name: [None] for name in written.names}
    stale.update(read_seq=[1], file_seq=[1], path=["a.jsonl"], line_no=[1], event_id=["old"])
    land(lake / RAW_EVENTS_FOLDER, {"ingest=1-3/event_date=2026-10-02/part-0.parquet":
                                    _parquet(pa.table(stale, written))})  # fmt: skip
    assert table(con, "SELECT count(*) FROM meterbook_raw.landing_files") == [(0,)]
    result = run_ingest(con, landing, NOW, spark=SparkReading(lambda: spark, lake))
    assert [f.lines_read for f in result.files] == [2]
    # no file of 1-3 is on record: its folder is gone, and with it its file_seqs' rows
    assert table(con, "SELECT file_seq FROM meterbook_raw.landing_files") == [(1,)]
    assert [p.name for p in (lake / RAW_EVENTS_FOLDER).iterdir()] == ["ingest=1-1"]
    rows = f"read_parquet({quote_literal(f'{lake}/{RAW_EVENTS_FOLDER}/**/*.parquet')})"
    kept = COMMITTED_ROWS.format(
        columns="r.event_id", rows=rows, files="meterbook_raw.landing_files"
    )
    assert sorted(table(con, kept)) == [("e1",), ("e2",)]


def test_an_ingest_starts_its_spark_only_to_read_and_says_which(spark, tmp_path, monkeypatch):
    # without METERBOOK_SPARK_REMOTE, a session of this process (here the tier's own); the
    # Spark Connect server's is tests/spark/test_close_on_spark.py's
    monkeypatch.delenv("METERBOOK_SPARK_REMOTE", raising=False)
    used = {}
    with _spark_reading(Workspace(tmp_path), Settings(warehouse="spark"), used) as reading:
        assert used == {}, "no Spark until a file is to be read"
        assert reading.session() is spark
    assert used == {"read_on_spark": spark.sparkContext.master}
    assert spark.range(3).count() == 3, "a session of this process is kept for its next ingest"
