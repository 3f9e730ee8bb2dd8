"""Across files and runs: content identity, read order, idempotence, keys, atomicity."""

from __future__ import annotations

import os
import threading
from datetime import date

import pytest
from ingest_helpers import event, jsonl

from orchestration.ingest import discovery
from orchestration.ingest import ingest as ingest_module
from orchestration.ingest.discovery import HashStopped
from orchestration.ingest.ingest import pending_files


def test_rerunning_changes_nothing(landing):
    landing.write("a.jsonl", jsonl(event("e1"), event("e1"), event("e2")) + "bad\n")
    landing.write(
        "b/c.csv", "event_id,customer_id,event_name,timestamp\ne3,acme,x,2026-10-02T10:00:00Z\n"
    )
    first = landing.ingest()
    before = landing.snapshot()
    again = landing.ingest()
    assert again.files == [] and again.lines_read == 0 and again.event_days == []
    assert landing.snapshot() == before
    assert first.lines_read == 5


def test_same_bytes_under_another_name_is_recorded_as_a_path_only(landing):
    body = jsonl(event("e1"), event("e2"))
    landing.write("main.jsonl", body)
    landing.write("copies/main-copy.jsonl", body)
    result = landing.ingest()
    assert [f.path for f in result.files] == ["copies/main-copy.jsonl"]  # first in path order
    assert result.skipped_copies == ["main.jsonl"]
    landing.write("later/again.jsonl", body)
    later = landing.ingest()
    assert later.files == [] and later.skipped_copies == ["later/again.jsonl"]
    assert landing.rows("SELECT count(*) FROM meterbook_raw.raw_events") == [(2,)]
    assert landing.rows("SELECT path FROM meterbook_raw.landing_file_paths ORDER BY path") == [
        ("copies/main-copy.jsonl",),
        ("later/again.jsonl",),
        ("main.jsonl",),
    ]


def test_files_are_read_in_path_order_and_later_runs_come_after(landing):
    landing.write("b.jsonl", jsonl(event("b1")))
    landing.write("a/z.jsonl", jsonl(event("a1"), event("a2")))
    landing.ingest()
    landing.write("0-early-name.jsonl", jsonl(event("c1")))
    landing.ingest()
    order = [e["event_id"] for e in landing.events()]
    assert order == ["a1", "a2", "b1", "c1"]
    seqs = landing.rows("SELECT path, file_seq FROM meterbook_raw.landing_files ORDER BY file_seq")
    assert seqs == [("a/z.jsonl", 1), ("b.jsonl", 2), ("0-early-name.jsonl", 3)]
    read_seqs = [e["read_seq"] for e in landing.events()]
    assert read_seqs == sorted(set(read_seqs))


def test_key_rank_and_key_repeated_across_ingests(landing):
    landing.write("1.jsonl", jsonl(event("k1"), event("k2"), event("k1"), event("k3")))
    landing.ingest()
    first = {(e["line_no"]): (e["key_rank"], e["key_repeated"]) for e in landing.events()}
    assert first == {1: (1, True), 2: (1, False), 3: (2, True), 4: (1, False)}
    # a rejected copy does not claim the key; a later file repeats k2
    landing.write("2.jsonl", jsonl(event("k2", timestamp="bad"), event("k2"), event("k1")))
    landing.ingest()
    rows = [(e["path"], e["event_id"], e["key_rank"], e["key_repeated"]) for e in landing.events()]
    assert rows == [
        ("1.jsonl", "k1", 1, True),
        ("1.jsonl", "k2", 1, True),
        ("1.jsonl", "k1", 2, True),
        ("1.jsonl", "k3", 1, False),
        ("2.jsonl", "k2", None, None),
        ("2.jsonl", "k2", 2, True),
        ("2.jsonl", "k1", 3, True),
    ]


def test_keys_belong_to_their_customer(landing):
    landing.write(
        "a.jsonl", jsonl(event("e1", customer_id="acme"), event("e1", customer_id="beta"))
    )
    landing.ingest()
    assert [(e["key_rank"], e["key_repeated"]) for e in landing.events()] == [
        (1, False),
        (1, False),
    ]


def test_payload_hash_compares_by_value(landing):
    base = event("d1", properties={"gb": 2.5, "env": "prod", "n": 2})
    same = [
        {**base, "properties": {"env": "prod", "n": 2, "gb": 2.5}},  # key order
        {**base, "properties": {"gb": 2.50, "env": "prod", "n": 2.0}},  # 2.50, 2.0
        {**base, "properties": {"gb": "2.5", "env": "prod", "n": "2"}},  # numbers as text
        {**base, "timestamp": "2026-10-02T12:00:00+02:00", "source": "other"},  # same instant
        {**base, "properties": {**base["properties"], "gone": None}},  # null = absent
    ]
    different = [
        {**base, "properties": {"gb": 9.0, "env": "prod", "n": 2}},
        {**base, "event_name": "other"},
        {**base, "timestamp": "2026-10-02T10:00:01Z"},
        {**base, "properties": {"gb": 2.5, "env": "prod", "n": 2, "extra": True}},
        {**base, "properties": {"gb": 2.5, "env": "prod", "n": "true"}},
    ]
    landing.write("a.jsonl", jsonl(base, *same, *different))
    landing.ingest()
    hashes = [e["payload_hash"] for e in landing.events()]
    assert all(h is not None for h in hashes)
    assert set(hashes[: 1 + len(same)]) == {hashes[0]}
    assert len(set(hashes[1 + len(same) :]) | {hashes[0]}) == 1 + len(different)


def test_payload_hash_is_given_to_earlier_rows_when_a_later_ingest_repeats_them(landing):
    landing.write("1.jsonl", jsonl(event("e1", properties={"a": 1}), event("e2")))
    landing.ingest()
    assert [e["payload_hash"] for e in landing.events()] == [None, None]  # nothing repeats yet
    landing.write("2.jsonl", jsonl(event("e1", properties={"a": 1.0})))
    landing.ingest()
    first, other, later = landing.events()
    assert first["key_repeated"] and later["key_repeated"] and not other["key_repeated"]
    assert first["payload_hash"] == later["payload_hash"] is not None
    assert other["payload_hash"] is None


def test_event_days_are_the_utc_days_of_new_events(landing):
    landing.write(
        "a.jsonl",
        jsonl(
            event("e1", timestamp="2026-10-02T23:30:00-02:00"),  # 10-03 in UTC
            event("e2", timestamp="2026-10-02T10:00:00Z"),
            event("e3", timestamp="nope"),
        ),
    )
    assert landing.ingest().event_days == [date(2026, 10, 2), date(2026, 10, 3)]
    landing.write("b.jsonl", jsonl(event("e4", timestamp="2026-10-09T10:00:00Z")))
    assert landing.ingest().event_days == [date(2026, 10, 9)]


def test_pending_files_sees_new_content_only(landing):
    assert pending_files(landing.con, landing.dir) == []
    a = landing.write("a.jsonl", jsonl(event("e1")))
    assert pending_files(landing.con, landing.dir) == [a]  # before any ingest: no tables yet
    landing.ingest()
    assert pending_files(landing.con, landing.dir) == []
    landing.write("copy.jsonl", jsonl(event("e1")))
    b = landing.write("b.jsonl", jsonl(event("e2")))
    assert pending_files(landing.con, landing.dir) == [b]


def test_a_touched_file_is_not_read_again(landing):
    path = landing.write("a.jsonl", jsonl(event("e1")))
    landing.ingest()
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert pending_files(landing.con, landing.dir) == []
    result = landing.ingest()
    assert result.files == [] and result.skipped_copies == []
    assert landing.rows("SELECT mtime_ns FROM meterbook_raw.landing_file_paths") == [
        (stat.st_mtime_ns + 10**9,)
    ]


def test_a_path_overwritten_with_new_bytes_is_new_content(landing):
    landing.write("a.jsonl", jsonl(event("e1")))
    landing.ingest()
    landing.write("a.jsonl", jsonl(event("e1"), event("e2")))
    result = landing.ingest()
    assert [f.lines_read for f in result.files] == [2]
    assert [(e["event_id"], e["key_rank"]) for e in landing.events()] == [
        ("e1", 1),
        ("e1", 2),
        ("e2", 1),
    ]
    assert landing.rows("SELECT count(*) FROM meterbook_raw.landing_file_paths") == [(2,)]


def _spy_on_reads(monkeypatch) -> list[str]:
    """The paths ingest starts reading, in order."""
    reads = []
    real = ingest_module._read_file

    def spy(con, f, *args):
        reads.append(f.rel)
        return real(con, f, *args)

    monkeypatch.setattr(ingest_module, "_read_file", spy)
    return reads


def test_a_file_of_a_size_on_record_is_hashed_before_it_is_read(landing, monkeypatch):
    body = jsonl(event("e1"), event("e2"))
    landing.write("a.jsonl", body)
    landing.ingest()
    reads = _spy_on_reads(monkeypatch)
    landing.write("b.jsonl", body)  # a copy: its size is on record
    landing.write("c.jsonl", jsonl(event("e3")))  # a size never seen: read while hashed
    result = landing.ingest()
    assert reads == ["c.jsonl"]
    assert result.skipped_copies == ["b.jsonl"] and [f.path for f in result.files] == ["c.jsonl"]


def test_content_on_record_read_before_its_hash_was_known_is_dropped_again(landing, monkeypatch):
    body = jsonl(event("e1"), event("e2"))
    landing.write("a.jsonl", body)
    landing.ingest()
    # a size on record that is not its content's (the file changed while it was hashed)
    landing.con.execute("UPDATE meterbook_raw.landing_files SET size_bytes = 1")
    before = landing.snapshot()
    reads = _spy_on_reads(monkeypatch)
    landing.write("b.jsonl", body)
    landing.write("c.jsonl", jsonl(event("e3")))
    result = landing.ingest()
    assert reads == ["b.jsonl", "c.jsonl"]  # b was read, and its hash then named a copy
    assert result.skipped_copies == ["b.jsonl"] and [f.path for f in result.files] == ["c.jsonl"]
    after = landing.snapshot()
    new_rows = [row for row in after["events"] if row not in before["events"]]
    assert [(row[2], row[4]) for row in new_rows] == [("c.jsonl", "e3")]  # (path, event_id)
    assert [e["key_rank"] for e in landing.events()] == [1, 1, 1]
    assert landing.lines_per_file() == [("a.jsonl", 2, 2), ("c.jsonl", 1, 1)]


def test_a_file_whose_hash_fails_after_its_read_stays_pending(landing, monkeypatch):
    landing.write("a.jsonl", jsonl(event("e1")))
    b = landing.write("b.jsonl", jsonl(event("e2"), event("e3")))
    real_hash = ingest_module.sha256_file

    def failing_for_b(path, stop=None):
        if path.name == "b.jsonl":
            raise PermissionError("vanished")
        return real_hash(path, stop)

    monkeypatch.setattr(ingest_module, "sha256_file", failing_for_b)
    reads = _spy_on_reads(monkeypatch)
    result = landing.ingest()
    assert reads == ["a.jsonl", "b.jsonl"]
    assert [f.path for f in result.files] == ["a.jsonl"]
    assert [e["event_id"] for e in landing.events()] == ["e1"]
    monkeypatch.undo()
    assert pending_files(landing.con, landing.dir) == [b]
    assert [f.path for f in landing.ingest().files] == ["b.jsonl"]
    assert [e["event_id"] for e in landing.events()] == ["e1", "e2", "e3"]


def test_a_failed_run_gives_up_the_hash_under_way(landing, monkeypatch):
    """The error surfaces without waiting for the rest of a large file to be hashed."""
    landing.write("a.jsonl", jsonl(event("e1")))  # a size never seen: read while hashed
    landing.write("b.jsonl", jsonl(*[event(f"e{i}") for i in range(5000)]))
    monkeypatch.setattr(discovery, "_HASH_CHUNK", 1)  # b's hash now takes seconds
    outcomes, hashing_b = {}, threading.Event()
    real_hash = ingest_module._hash_or_none

    def recorded(f, stop):
        if f.rel == "b.jsonl":
            hashing_b.set()
        try:
            outcomes[f.rel] = real_hash(f, stop)
        except HashStopped:
            outcomes[f.rel] = "stopped"
            raise
        return outcomes[f.rel]

    def crash(*args):
        assert hashing_b.wait(30)  # fail while b is being hashed, not before it starts
        raise RuntimeError("killed")

    monkeypatch.setattr(ingest_module, "_hash_or_none", recorded)
    monkeypatch.setattr(ingest_module, "_read_file", crash)  # a's read fails at once
    with pytest.raises(RuntimeError, match="killed"):
        landing.ingest()
    assert outcomes["b.jsonl"] == "stopped"  # not hashed to its end
    monkeypatch.undo()
    assert [f.path for f in landing.ingest().files] == ["a.jsonl", "b.jsonl"]


def test_a_crash_leaves_nothing_and_the_next_run_reads_everything(landing, monkeypatch):
    landing.write("a.jsonl", jsonl(event("e1")))
    landing.ingest()
    before = landing.snapshot()
    landing.write("b.jsonl", jsonl(event("e1"), event("e2")))
    landing.write("c.jsonl", jsonl(event("e3")))

    def crash(*args):
        raise RuntimeError("killed")

    # the last step before the commit: every row is written by then
    monkeypatch.setattr(ingest_module, "_event_days", crash)
    with pytest.raises(RuntimeError, match="killed"):
        landing.ingest()
    assert landing.snapshot() == before
    monkeypatch.undo()
    result = landing.ingest()
    assert [f.path for f in result.files] == ["b.jsonl", "c.jsonl"]
    assert [(e["event_id"], e["key_rank"], e["key_repeated"]) for e in landing.events()] == [
        ("e1", 1, True),
        ("e1", 2, True),
        ("e2", 1, False),
        ("e3", 1, False),
    ]


def test_batches_of_one_file_rank_keys_like_one_batch(landing):
    body = jsonl(*[event(f"e{i % 7}", properties={"i": i % 3}) for i in range(60)])
    landing.write("a.jsonl", body)
    landing.ingest(chunk_bytes=512)  # many batches
    small = [(e["key_rank"], e["key_repeated"], e["payload_hash"]) for e in landing.events()]
    other = type(landing)(landing.dir.parent.parent / "other")
    other.write("a.jsonl", body)
    other.ingest()
    assert small == [(e["key_rank"], e["key_repeated"], e["payload_hash"]) for e in other.events()]
    assert {r for r, _, _ in small} == set(range(1, 10))


# the schema and its landing_files as every earlier version had them (unchanged since)
LANDING_FILES = """
CREATE SCHEMA meterbook_raw;
CREATE TABLE meterbook_raw.landing_files (
    file_sha256 VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, format VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL, file_seq BIGINT NOT NULL UNIQUE, ingested_at TIMESTAMPTZ NOT NULL,
    lines_read BIGINT NOT NULL, error VARCHAR);"""

OLD_RAW_EVENTS = (
    LANDING_FILES
    + """
INSERT INTO meterbook_raw.landing_files VALUES
    ('f', 'old.jsonl', 'jsonl', 1000, 1, '2026-11-01 00:00Z', 4, NULL);
CREATE TABLE meterbook_raw.raw_events (
    read_seq BIGINT NOT NULL, file_sha256 VARCHAR NOT NULL, path VARCHAR NOT NULL,
    line_no BIGINT NOT NULL, event_id VARCHAR, customer_id VARCHAR, event_name VARCHAR,
    event_ts TIMESTAMPTZ, properties JSON, source VARCHAR, payload_hash VARCHAR,
    parse_reason VARCHAR, raw_line VARCHAR, ingested_at TIMESTAMPTZ NOT NULL,
    key_rank INTEGER, key_repeated BOOLEAN);
INSERT INTO meterbook_raw.raw_events VALUES
    (1, 'f', 'old.jsonl', 1, 'e1', 'acme', 'x', '2026-10-02 10:00Z', '{}', NULL, 'h1', NULL,
     NULL, '2026-11-01 00:00Z', 1, true),
    (2, 'f', 'old.jsonl', 2, 'e1', 'acme', 'x', '2026-10-02 10:00Z', '{}', NULL, 'h1', NULL,
     NULL, '2026-11-01 00:00Z', 2, true),
    (3, 'f', 'old.jsonl', 3, 'e2', 'acme', 'x', '2026-10-02 10:00Z', '{}', NULL, NULL, NULL,
     NULL, '2026-11-01 00:00Z', 1, false),
    (4, 'f', 'old.jsonl', 4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'malformed',
     'nope', '2026-11-01 00:00Z', NULL, NULL);
"""
)


def test_a_warehouse_with_ranks_on_raw_events_keeps_them_in_repeated_events(landing):
    landing.con.execute(OLD_RAW_EVENTS)
    landing.write("new.jsonl", jsonl(event("e2")))
    landing.ingest()
    columns = landing.rows(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'raw_events' "
        "AND column_name IN ('key_rank', 'key_repeated', 'payload_hash')"
    )
    assert columns == []
    ranks = [(e["event_id"], e["key_rank"], e["key_repeated"]) for e in landing.events()]
    assert ranks == [
        ("e1", 1, True),
        ("e1", 2, True),
        ("e2", 1, True),  # repeated by the new file: given its rank and hash now
        (None, None, None),
        ("e2", 2, True),
    ]
    assert [e["payload_hash"] for e in landing.events("read_seq <= 2")] == ["h1", "h1"]
    # and rows name their file by file_seq, looked up from their sha256
    assert landing.rows("SELECT read_seq, file_seq FROM meterbook_raw.raw_events ORDER BY 1") == [
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 1),
        (6, 2),
    ]
    assert landing.rows(
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'raw_events' "
        "AND column_name = 'file_sha256'"
    ) == [(0,)]


ROUND_9_RAW_EVENTS = (
    LANDING_FILES
    + """
INSERT INTO meterbook_raw.landing_files VALUES
    ('sha-a', 'a.jsonl', 'jsonl', 100, 1, '2026-11-01 00:00Z', 2, NULL),
    ('sha-b', 'b.jsonl', 'jsonl', 200, 2, '2026-11-01 00:00Z', 1, NULL);
CREATE TABLE meterbook_raw.raw_events (
    read_seq BIGINT NOT NULL, file_sha256 VARCHAR NOT NULL, path VARCHAR NOT NULL,
    line_no BIGINT NOT NULL, event_id VARCHAR, customer_id VARCHAR, event_name VARCHAR,
    event_ts TIMESTAMPTZ, properties JSON, source VARCHAR, parse_reason VARCHAR,
    raw_line VARCHAR, ingested_at TIMESTAMPTZ NOT NULL);
INSERT INTO meterbook_raw.raw_events VALUES
    (2, 'sha-a', 'a.jsonl', 1, 'e1', 'acme', 'x', '2026-10-02 10:00Z', '{}', NULL, NULL, NULL,
     '2026-11-01 00:00Z'),
    (3, 'sha-a', 'a.jsonl', 2, 'e2', 'acme', 'x', '2026-10-02 10:00Z', '{}', NULL, NULL, NULL,
     '2026-11-01 00:00Z'),
    (5, 'sha-b', 'b.jsonl', 1, 'e3', 'acme', 'x', '2026-10-02 10:00Z', '{}', NULL, NULL, NULL,
     '2026-11-01 00:00Z');
"""
)


def test_a_warehouse_naming_files_by_sha256_is_rewritten_with_file_seq(landing):
    landing.con.execute(ROUND_9_RAW_EVENTS)
    landing.write("c.jsonl", jsonl(event("e4")))
    landing.ingest()
    assert landing.lines_per_file() == [("a.jsonl", 2, 2), ("b.jsonl", 1, 1), ("c.jsonl", 1, 1)]
    assert [(e["read_seq"], e["event_id"]) for e in landing.events()] == [
        (2, "e1"),
        (3, "e2"),
        (5, "e3"),
        (7, "e4"),
    ]
    columns = landing.rows(
        "SELECT column_name FROM duckdb_columns() WHERE table_name = 'raw_events' ORDER BY 1"
    )
    assert ("file_sha256",) not in columns and ("file_seq",) in columns
