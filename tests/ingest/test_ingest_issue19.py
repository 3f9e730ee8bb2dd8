"""Issue 19 ("Every cent once"): files caught mid-write or vanishing mid-read, ids that start
with a brace, oversized lines and gzip bombs, symlinks out of landing/ and symlink loops."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import RunRequest, SkipReason, build_sensor_context, materialize
from ingest_helpers import event, jsonl

from orchestration.catalog.models import Settings
from orchestration.defs.ingest.assets import landing_files_sensor, raw_events
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.ingest import ingest as ingest_module
from orchestration.ingest import readers, records
from orchestration.ingest.ingest import ensure_raw_schema, pending_files
from orchestration.sql import connect

GUID = "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}"


# -- 7: ids and event names that start with a brace or a bracket are text -----------------


def test_brace_ids_are_text_in_json_lines(landing):
    landing.write(
        "a.jsonl",
        jsonl(
            event(GUID, customer_id="[acme]", event_name="{api}.request"),
            event("e2", customer_id={"id": "acme"}),  # an object value is still missing
            event(["e3"]),  # and so is an array
        ),
    )
    landing.ingest()
    rows = [
        (e["event_id"], e["customer_id"], e["event_name"], e["parse_reason"])
        for e in landing.events()
    ]
    assert rows == [
        (GUID, "[acme]", "{api}.request", None),
        ("e2", None, "api.request", "missing_field"),
        (None, "acme", "api.request", "missing_field"),
    ]


def test_brace_ids_are_text_in_csv(landing):
    # every CSV cell is a string, so a cell that starts with a brace is an id like any other
    landing.write(
        "a.csv",
        "event_id,customer_id,event_name,timestamp\n"
        f'"{GUID}",[acme],{{x}},2026-10-02T10:00:00Z\n'
        '"{""a"": 1}",acme,x,2026-10-02T10:00:00Z\n',
    )
    landing.ingest()
    rows = [
        (e["event_id"], e["customer_id"], e["event_name"], e["parse_reason"])
        for e in landing.events()
    ]
    assert rows == [(GUID, "[acme]", "{x}", None), ('{"a": 1}', "acme", "x", None)]


def test_brace_ids_are_text_in_parquet(landing):
    table = pa.table(
        {
            "event_id": [GUID, "p2"],
            "customer_id": ["[acme]", "acme"],
            "event_name": ["{x}", "x"],
            "timestamp": ["2026-10-02T10:00:00Z"] * 2,
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    landing.write("a.parquet", sink.getvalue().to_pybytes())
    # a struct id column is an object value: missing_field
    nested = pa.table(
        {
            "event_id": pa.array([{"a": "p3"}], pa.struct([("a", pa.string())])),
            "customer_id": ["acme"],
            "event_name": ["x"],
            "timestamp": ["2026-10-02T10:00:00Z"],
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(nested, sink)
    landing.write("b.parquet", sink.getvalue().to_pybytes())
    landing.ingest()
    rows = [
        (e["path"], e["event_id"], e["customer_id"], e["event_name"], e["parse_reason"])
        for e in landing.events()
    ]
    assert rows == [
        ("a.parquet", GUID, "[acme]", "{x}", None),
        ("a.parquet", "p2", "acme", "x", None),
        ("b.parquet", None, "acme", "x", "missing_field"),
    ]


# -- 3: a file that vanishes before it is read whole stays pending ---------------------------


def _hash_then(monkeypatch, action):
    """Hash every file, then run `action(path)` before its read starts (in either order of
    the run: read while hashed, or hashed first)."""
    hashed = {}
    real_hash, real_read = ingest_module.sha256_file, ingest_module._read_file

    def hash_first(path, stop=None):
        try:
            return real_hash(path, stop)
        finally:
            hashed.setdefault(path.name, threading.Event()).set()

    def act_then_read(con, f, *args):
        assert hashed.setdefault(f.path.name, threading.Event()).wait(30)
        action(f.path)
        return real_read(con, f, *args)

    monkeypatch.setattr(ingest_module, "sha256_file", hash_first)
    monkeypatch.setattr(ingest_module, "_read_file", act_then_read)


def test_a_file_that_vanishes_before_it_is_read_stays_pending(landing, monkeypatch):
    body = jsonl(*[event(f"v{i}") for i in range(100)])
    landing.write("gone.jsonl", body)
    landing.write("keep.jsonl", jsonl(event("k1")))

    def vanish(path):
        if path.name == "gone.jsonl":
            path.unlink()

    _hash_then(monkeypatch, vanish)
    result = landing.ingest()
    monkeypatch.undo()
    assert [f.path for f in result.files] == ["keep.jsonl"]  # gone.jsonl is not on record
    assert landing.rows("SELECT path FROM meterbook_raw.landing_file_paths") == [("keep.jsonl",)]
    assert [e["event_id"] for e in landing.events()] == ["k1"]
    # the same bytes dropped again, under another name: read now
    again = landing.write("again.jsonl", body)
    assert pending_files(landing.con, landing.dir) == [again]
    assert [(f.path, f.lines_read, f.error) for f in landing.ingest().files] == [
        ("again.jsonl", 100, None)
    ]
    assert len(landing.events("parse_reason IS NULL")) == 101


def test_a_file_that_cannot_be_opened_stays_pending(landing, monkeypatch):
    body = jsonl(event("e1"), event("e2"))
    path = landing.write("a.jsonl.gz", body, gz=True)

    def deny(p, *args):
        raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(readers.gzip, "open", deny)
    result = landing.ingest()
    monkeypatch.undo()
    assert result.files == [] and landing.events() == []
    assert pending_files(landing.con, landing.dir) == [path]
    assert [f.lines_read for f in landing.ingest().files] == [2]


# -- 5: a file that changes while it is read waits for the next run ---------------------------

HEADER = "event_id,customer_id,event_name,timestamp,properties.tokens\n"


def test_a_file_still_being_written_is_not_recorded(landing, monkeypatch):
    path = landing.write("a.csv", HEADER + "c1,acme,x,2026-10-02T10:00:00Z,9")

    def finish_writing(p):
        if p.name == "a.csv":
            with open(p, "a") as fh:  # the producer writes the rest while we read
                fh.write("00000\n")

    real_read = ingest_module._read_file

    def read_then_write(con, f, *args):
        try:
            return real_read(con, f, *args)
        finally:
            finish_writing(f.path)

    monkeypatch.setattr(ingest_module, "_read_file", read_then_write)
    first = landing.ingest()
    monkeypatch.undo()
    assert first.files == [] and landing.events() == []
    assert landing.rows("SELECT count(*) FROM meterbook_raw.landing_file_paths") == [(0,)]
    assert pending_files(landing.con, landing.dir) == [path]
    landing.ingest()
    rows = landing.events()
    assert [(e["event_id"], json.loads(e["properties"]), e["key_rank"]) for e in rows] == [
        ("c1", {"tokens": "900000"}, 1)
    ]


def test_a_file_hashed_first_that_changes_while_it_is_read_leaves_no_rows(landing, monkeypatch):
    landing.write("a.jsonl", jsonl(event("e1")))
    landing.ingest()
    b = landing.write("b.jsonl", jsonl(event("e2")))  # a size on record: hashed, then read
    real_read = ingest_module._read_file

    def read_then_append(con, f, *args):
        try:
            return real_read(con, f, *args)
        finally:
            with open(f.path, "a") as fh:
                fh.write(jsonl(event("e3")))

    monkeypatch.setattr(ingest_module, "_read_file", read_then_append)
    result = landing.ingest()
    monkeypatch.undo()
    assert result.files == [] and [e["event_id"] for e in landing.events()] == ["e1"]
    assert pending_files(landing.con, landing.dir) == [b]
    landing.ingest()
    assert [e["event_id"] for e in landing.events()] == ["e1", "e2", "e3"]
    assert landing.lines_per_file() == [("a.jsonl", 1, 1), ("b.jsonl", 2, 2)]


def test_a_copy_that_changes_while_it_is_hashed_is_not_recorded(landing, monkeypatch):
    body = jsonl(event("e1"))
    landing.write("a.jsonl", body)
    landing.ingest()
    b = landing.write("b.jsonl", body)  # a copy, by its size hashed before anything is read
    real_hash = ingest_module.sha256_file

    def hash_then_append(p, stop=None):
        try:
            return real_hash(p, stop)
        finally:
            with open(p, "a") as fh:
                fh.write(jsonl(event("e2")))

    monkeypatch.setattr(ingest_module, "sha256_file", hash_then_append)
    result = landing.ingest()
    monkeypatch.undo()
    assert result.files == [] and result.skipped_copies == []
    assert pending_files(landing.con, landing.dir) == [b]
    assert [f.lines_read for f in landing.ingest().files] == [2]


def test_pending_files_leaves_a_young_file_alone_until_it_settles(landing):
    a = landing.write("a.jsonl", jsonl(event("e1")))
    old = landing.write("old.jsonl", jsonl(event("e2")))
    mtime = a.stat().st_mtime_ns
    os.utime(old, ns=(mtime - 60 * 10**9, mtime - 60 * 10**9))
    written = datetime.fromtimestamp(mtime / 1e9, UTC)
    for _ in ("no tables yet", "tables"):
        assert pending_files(landing.con, landing.dir, 30, written + timedelta(seconds=29)) == [old]
        later = written + timedelta(seconds=31)
        assert pending_files(landing.con, landing.dir, 30, later) == [a, old]
        assert pending_files(landing.con, landing.dir) == [a, old]  # no settle time by default
        ensure_raw_schema(landing.con)


def test_an_explicit_ingest_reads_young_files_at_once(landing):
    landing.write("a.jsonl", jsonl(event("e1")))
    assert [f.path for f in landing.ingest().files] == ["a.jsonl"]


def _sensor_workspace(tmp_path, settings: str):
    home = tmp_path / "home"
    (home / "catalog").mkdir(parents=True)
    (home / "catalog" / "catalog.yaml").write_text(settings)
    (home / "landing" / "events").mkdir(parents=True)
    connect(home / "warehouse.duckdb").close()
    return home


@pytest.mark.parametrize("settle", [None, 600])
def test_the_sensor_waits_for_files_to_settle(tmp_path, settle):
    settings = "settings:\n" + (
        f"  landing_settle_seconds: {settle}\n" if settle else "  grace_days: 3\n"
    )
    home = _sensor_workspace(tmp_path, settings)
    path = home / "landing" / "events" / "a.jsonl"
    path.write_text(jsonl(event("e1")))
    context = build_sensor_context(resources={"meterbook": MeterbookWorkspace(home=str(home))})
    skipped = landing_files_sensor(context)
    assert isinstance(skipped, SkipReason)
    age = (settle or 30) + 5
    os.utime(path, (time.time() - age, time.time() - age))
    started = landing_files_sensor(context)
    assert isinstance(started, RunRequest) and json.loads(started.run_key) == [path.as_posix()]


# -- 8: oversized lines and gzip bombs, in bounded memory --------------------------------------

CAP = 2048
LONG = json.dumps(event("long", properties={"blob": "x" * 5000}))


def _long_line_message(size: int, cap: int = CAP) -> str:
    return f"line of {size} bytes exceeds max_line_bytes {cap}"


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("chunk_bytes", [1024, 1 << 20])  # the line longer than a window, or not
def test_an_oversized_line_is_one_malformed_line(landing, gz, chunk_bytes):
    body = jsonl(event("e1")) + LONG + "\r\n" + jsonl(event("e2")) + LONG
    landing.write("a.jsonl" + (".gz" if gz else ""), body, gz=gz)
    result = landing.ingest(chunk_bytes=chunk_bytes, max_line_bytes=CAP)
    rows = [
        (e["line_no"], e["event_id"], e["parse_reason"], e["raw_line"]) for e in landing.events()
    ]
    assert rows == [
        (1, "e1", None, None),
        (2, None, "malformed", _long_line_message(len(LONG))),
        (3, "e2", None, None),
        (4, None, "malformed", _long_line_message(len(LONG))),  # the last line, no newline
    ]
    assert result.lines_read == 4 and result.files[0].error is None
    assert landing.lines_per_file() == [(result.files[0].path, 4, 4)]


def test_a_line_at_the_cap_is_read(landing):
    line = json.dumps(event("e1", properties={"blob": ""}))
    padded = line[:-3] + "x" * (CAP - len(line)) + line[-3:]
    assert len(padded) == CAP
    landing.write("a.jsonl", padded + "\r\n" + padded + "\n")
    landing.ingest(max_line_bytes=CAP)
    assert landing.reasons() == [None, None]


@pytest.mark.parametrize("chunk_bytes", [512, 1 << 20])
def test_an_oversized_csv_record_keeps_the_line_numbers(landing, chunk_bytes):
    cell = '"' + ("a\n" + "b" * 1000 + '""') * 10 + '"'  # 10 newlines inside a quoted cell
    landing.write(
        "a.csv",
        "event_id,customer_id,event_name,timestamp\n"
        "c1,acme,x,2026-10-02T10:00:00Z\n"
        f"c2,acme,{cell},2026-10-02T10:00:00Z\n"
        "c3,acme,x,2026-10-02T10:00:00Z\n",
    )
    landing.ingest(chunk_bytes=chunk_bytes, max_line_bytes=CAP)
    size = len(f"c2,acme,{cell},2026-10-02T10:00:00Z")
    rows = [
        (e["line_no"], e["event_id"], e["parse_reason"], e["raw_line"]) for e in landing.events()
    ]
    assert rows == [
        (2, "c1", None, None),
        (3, None, "malformed", _long_line_message(size)),
        (14, "c3", None, None),
    ]


def test_an_oversized_csv_header_makes_the_file_unreadable(landing):
    header = ",".join(f"column_{i}" for i in range(500))
    landing.write("a.csv", "\n" + header + "\ne1,acme\n")
    result = landing.ingest(max_line_bytes=CAP)
    assert result.files[0].lines_read == 1
    assert "CSV header" in result.files[0].error and str(len(header)) in result.files[0].error
    assert [(e["line_no"], e["parse_reason"]) for e in landing.events()] == [(0, "malformed")]


def _parquet_bytes(n: int) -> bytes:
    sink = pa.BufferOutputStream()
    table = pa.table({"event_id": [f"p{i}" for i in range(n)], "customer_id": ["acme"] * n})
    pq.write_table(table, sink, compression="none")
    return sink.getvalue().to_pybytes()


def test_a_file_that_decompresses_to_too_much_is_unreadable(landing):
    cap = 64 << 10
    many = jsonl(*[event(f"e{i}") for i in range(2000)])  # ~250 KB
    landing.write("bomb.jsonl.gz", many, gz=True)
    landing.write("bomb.csv.gz", "event_id,customer_id\n" + "e,acme\n" * 20000, gz=True)
    landing.write("bomb.json.gz", json.dumps([event(f"e{i}") for i in range(2000)]), gz=True)
    landing.write("bomb.parquet.gz", _parquet_bytes(20000), gz=True)
    landing.write("small.jsonl.gz", jsonl(event("s1")), gz=True)
    landing.write("plain.jsonl", many)  # only decompressed bytes count
    result = landing.ingest(max_decompressed_bytes=cap)
    errors = {f.path: f.error for f in result.files}
    assert errors["small.jsonl.gz"] is None and errors["plain.jsonl"] is None
    for name in ["bomb.jsonl.gz", "bomb.csv.gz", "bomb.json.gz", "bomb.parquet.gz"]:
        assert f"decompresses to more than {cap} bytes" in errors[name], name
        assert [(e["line_no"], e["parse_reason"]) for e in landing.events("path = ?", [name])] == [
            (0, "malformed")
        ]
    assert landing.lines_per_file() == sorted(
        (f.path, f.lines_read, f.lines_read) for f in result.files
    )


def test_an_oversized_line_is_skipped_in_bounded_memory(landing):
    landing.write("warm-up.jsonl.gz", jsonl(event("w")), gz=True)
    landing.ingest()  # imports and macros are not part of the measure
    size = 64 << 20
    line = b'{"event_id": "' + b"x" * size + b'"}\n'
    landing.write("big.jsonl.gz", line + jsonl(event()).encode(), gz=True)
    del line
    tracemalloc.start()
    try:
        landing.ingest(chunk_bytes=1 << 20, max_line_bytes=1 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert landing.reasons() == [None, "malformed", None]
    # a window or two and the hash's 8 MiB read buffer, never the line (numpy's buffers are
    # traced; before, the window grew to hold the line: a peak of twice its size)
    assert peak < size // 4


def test_the_caps_of_the_catalog_reach_the_ingest(tmp_path):
    home = _sensor_workspace(tmp_path, "settings:\n  max_line_bytes: 2048\n")
    (home / "landing" / "events" / "a.jsonl").write_text(jsonl(event("e1")) + LONG + "\n")
    resources = {"meterbook": MeterbookWorkspace(home=str(home))}
    assert materialize([raw_events], resources=resources).success
    with connect(home / "warehouse.duckdb") as con:
        rows = con.execute(
            "SELECT line_no, parse_reason, raw_line FROM meterbook_raw.raw_events ORDER BY 1"
        ).fetchall()
    assert rows == [(1, None, None), (2, "malformed", _long_line_message(len(LONG)))]


def test_the_default_caps_are_the_catalogs():
    settings = Settings()
    assert settings.max_line_bytes == records.DEFAULT_MAX_LINE_BYTES
    assert settings.max_decompressed_bytes == records.DEFAULT_MAX_DECOMPRESSED_BYTES


# -- 9: symlinks out of landing/events are not followed; loops do not fail the ingest --------


def test_symlinks_out_of_the_landing_folder_are_ignored(landing, tmp_path, caplog):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text(jsonl(event("secret")))
    (landing.dir / "host.jsonl").symlink_to(outside / "secret.jsonl")
    (landing.dir / "etc").symlink_to(outside, target_is_directory=True)
    (landing.dir / "sub").mkdir()
    (landing.dir / "sub" / "up.jsonl").symlink_to(Path("../../../outside/secret.jsonl"))
    landing.write("a.jsonl", jsonl(event("e1")))
    with caplog.at_level(logging.WARNING, logger="orchestration.defs.ingest"):
        result = landing.ingest()
    assert [f.path for f in result.files] == ["a.jsonl"] and result.skipped_copies == []
    assert landing.rows("SELECT path FROM meterbook_raw.landing_file_paths") == [("a.jsonl",)]
    assert [e["event_id"] for e in landing.events()] == ["e1"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in ["host.jsonl", "etc", "sub/up.jsonl"]:
        assert f"symlink {name}" in warned and "outside" in warned
    assert pending_files(landing.con, landing.dir) == []


def test_symlinks_inside_the_landing_folder_are_followed(landing):
    landing.write("data/a.jsonl", jsonl(event("e1")))
    (landing.dir / "alias").symlink_to("data", target_is_directory=True)
    (landing.dir / "link.jsonl").symlink_to("data/a.jsonl")
    result = landing.ingest()
    # the same bytes under other names: copies, read once
    assert [f.path for f in result.files] == ["alias/a.jsonl"]
    assert result.skipped_copies == ["data/a.jsonl", "link.jsonl"]
    assert [e["event_id"] for e in landing.events()] == ["e1"]


def test_symlink_loops_are_reported_and_do_not_fail_the_ingest(landing, caplog):
    landing.write("sub/a.jsonl", jsonl(event("e1")))
    (landing.dir / "here").symlink_to(".", target_is_directory=True)
    (landing.dir / "sub" / "back").symlink_to("..", target_is_directory=True)
    (landing.dir / "self.jsonl").symlink_to("self.jsonl")
    (landing.dir / "x.jsonl").symlink_to("y.jsonl")
    (landing.dir / "y.jsonl").symlink_to("x.jsonl")
    with caplog.at_level(logging.WARNING, logger="orchestration.defs.ingest"):
        result = landing.ingest()
    assert [f.path for f in result.files] == ["sub/a.jsonl"]
    warned = " ".join(r.getMessage() for r in caplog.records)
    for name in ["here", "sub/back", "self.jsonl", "x.jsonl", "y.jsonl"]:
        assert f"symlink {name}" in warned, name
    assert "loop" in warned
    assert pending_files(landing.con, landing.dir) == []
