"""The events API's landing files (SPEC 2.1, 9; orchestration/serve/landing_writer.py): a
hidden open file the ingest never reads, renamed once old or full enough, names that sort in
writing order, files a dead writer left open completed, the backlog the ingest has not read,
fsyncs shared by concurrent appends, and a failed write that leaves whole lines only."""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from orchestration.ingest.discovery import list_landing_files
from orchestration.ingest.ingest import pending_files
from orchestration.ingest.refresh_status import arrival_of
from orchestration.serve import landing_writer
from orchestration.serve.landing_writer import LandingWriter

OPEN_NAME = re.compile(r"^\.open-(\d{8}T\d{12}Z)-(\d+)-(\d{6})\.ndjson$")
FINAL_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})/(\d{8}T\d{12}Z)-(\d+)-(\d{6})\.ndjson$")
DEAD_PID = 999_999_999  # above any pid_max (4194304 at most on Linux)


@pytest.fixture
def landing(tmp_path) -> Path:
    return tmp_path / "landing" / "events"


def _writer(landing: Path, rotate_seconds: float = 3600, rotate_events: int = 1000):
    return LandingWriter(landing, rotate_seconds, rotate_events)


def _lines(tag: str, n: int) -> list[bytes]:
    return [json.dumps({"event_id": f"{tag}-{i}"}).encode() + b"\n" for i in range(n)]


def _open_files(landing: Path) -> list[Path]:
    return sorted((landing / "api").glob(".open-*"))


def _rotated(landing: Path) -> list[str]:
    """Final names (relative to api/) of the files discovery lists, in its order."""
    return [f.rel.removeprefix("api/") for f in list_landing_files(landing)]


def test_the_open_file_is_hidden_from_discovery_until_rotated(landing):
    writer = _writer(landing)
    lines = _lines("a", 3)
    writer.append(lines)
    (opened,) = _open_files(landing)
    match = OPEN_NAME.match(opened.name)
    assert match, opened.name
    assert (int(match[2]), match[3]) == (os.getpid(), "000001")
    assert opened.read_bytes() == b"".join(lines)
    assert writer.unrotated_bytes() == len(b"".join(lines))
    assert list_landing_files(landing) == []
    name = writer.rotate_if_due(now=time.time() + 3601)
    assert name == f"{FINAL_NAME.match(name)[1]}/{opened.name.removeprefix('.open-')}"
    assert _open_files(landing) == []
    assert _rotated(landing) == [name]
    assert (landing / "api" / name).read_bytes() == b"".join(lines)
    assert writer.unrotated_bytes() == 0


def test_a_file_is_rotated_once_it_holds_rotate_events(landing):
    writer = _writer(landing, rotate_events=4)
    writer.append(_lines("a", 2))
    writer.append(_lines("b", 1))
    assert _rotated(landing) == []
    writer.append(_lines("c", 2))  # 5 events >= 4: rotated after this batch, not split
    (first,) = _rotated(landing)
    assert (landing / "api" / first).read_bytes() == b"".join(
        _lines("a", 2) + _lines("b", 1) + _lines("c", 2)
    )
    assert _open_files(landing) == []
    writer.append(_lines("d", 1))
    (opened,) = _open_files(landing)
    assert OPEN_NAME.match(opened.name)[3] == "000002"
    assert _rotated(landing) == [first]


def test_a_file_is_rotated_once_it_is_rotate_seconds_old(landing):
    writer = _writer(landing, rotate_seconds=5)
    assert writer.rotate_if_due(now=time.time() + 100) is None  # nothing open
    before = time.time()
    writer.append(_lines("a", 1))
    after = time.time()
    assert writer.rotate_if_due(now=before) is None
    assert writer.rotate_if_due(now=after + 4) is None
    assert _rotated(landing) == []
    name = writer.rotate_if_due(now=after + 5.001)
    assert name is not None and _rotated(landing) == [name]
    assert writer.rotate_if_due(now=after + 100) is None
    # the day folder and the stamp are the time the file was opened, in UTC
    day, stamp = FINAL_NAME.match(name).group(1, 2)
    opened = datetime.strptime(stamp, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    assert before - 1 <= opened.timestamp() <= after + 1
    assert day == opened.date().isoformat()
    assert arrival_of(landing, f"api/{name}") == opened


def test_close_rotates_the_open_file_and_is_harmless_twice(landing):
    writer = _writer(landing)
    writer.close()
    assert _rotated(landing) == [] and _open_files(landing) == []
    writer.append(_lines("a", 2))
    writer.close()
    writer.close()
    (name,) = _rotated(landing)
    assert (landing / "api" / name).read_bytes() == b"".join(_lines("a", 2))
    assert _open_files(landing) == []


def test_final_names_sort_in_writing_order(landing):
    writer = _writer(landing, rotate_events=1)
    for i in range(40):  # many within one clock tick: the sequence number orders them
        writer.append(_lines(f"batch{i:02d}", 1))
    names = _rotated(landing)
    assert len(names) == 40
    assert [FINAL_NAME.match(n)[4] for n in names] == [f"{i:06d}" for i in range(1, 41)]
    contents = [(landing / "api" / n).read_bytes() for n in names]
    assert contents == [_lines(f"batch{i:02d}", 1)[0] for i in range(40)]


def test_api_files_are_pending_at_once_while_a_producers_new_file_settles(landing):
    writer = _writer(landing, rotate_events=1)
    writer.append(_lines("a", 1))
    (name,) = _rotated(landing)
    producer = landing / "vendor" / "fresh.ndjson"
    producer.parent.mkdir(parents=True)
    producer.write_bytes(_lines("v", 1)[0])
    _writer(landing).append(_lines("hidden", 1))  # another writer's open file: never pending
    con = duckdb.connect()
    try:
        settling = pending_files(con, landing, settle_seconds=60)
        later = datetime.now(UTC) + timedelta(seconds=120)
        settled = pending_files(con, landing, settle_seconds=60, clock=later)
    finally:
        con.close()
    assert [p.relative_to(landing).as_posix() for p in settling] == [f"api/{name}"]
    assert [p.relative_to(landing).as_posix() for p in settled] == [
        f"api/{name}",
        "vendor/fresh.ndjson",
    ]


# --- recover -------------------------------------------------------------------------------


def _leftover(landing: Path, pid: int, data: bytes, seq: int = 7) -> Path:
    folder = landing / "api"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".open-20260102T030405123456Z-{pid}-{seq:06d}.ndjson"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("pid", [DEAD_PID, os.getpid()], ids=["dead_pid", "own_pid"])
def test_recover_cuts_a_half_written_line_and_renames_the_file(landing, pid):
    whole = b"".join(_lines("a", 2))
    path = _leftover(landing, pid, whole + b'{"event_id": "half')
    writer = _writer(landing)
    recovered = writer.recover()
    name = f"2026-01-02/20260102T030405123456Z-{pid}-000007.ndjson"
    assert recovered == [name]
    assert not path.exists()
    assert _rotated(landing) == [name]
    assert (landing / "api" / name).read_bytes() == whole
    assert writer.backlog_bytes(None) == len(whole)


def test_recover_keeps_a_file_that_ends_on_a_whole_line(landing):
    whole = b"".join(_lines("a", 3))
    _leftover(landing, DEAD_PID, whole)
    (name,) = _writer(landing).recover()
    assert (landing / "api" / name).read_bytes() == whole


def test_recover_finds_the_last_line_break_far_from_the_end(landing):
    first = _lines("a", 1)[0]
    _leftover(landing, DEAD_PID, first + b'{"pad": "' + b"x" * (3 << 20))  # > 2 MiB unbroken
    (name,) = _writer(landing).recover()
    assert (landing / "api" / name).read_bytes() == first


@pytest.mark.parametrize("data", [b"", b'{"event_id": "never finished"'])
def test_recover_removes_a_file_with_no_whole_line(landing, data):
    path = _leftover(landing, DEAD_PID, data)
    assert _writer(landing).recover() == []
    assert not path.exists()
    assert _rotated(landing) == []


def test_recover_leaves_the_open_file_of_a_live_writer_alone(landing):
    data = b"".join(_lines("a", 1)) + b'{"half'
    path = _leftover(landing, os.getppid(), data)
    dead = _leftover(landing, DEAD_PID, _lines("b", 1)[0], seq=8)
    recovered = _writer(landing).recover()
    assert recovered == [f"2026-01-02/{dead.name.removeprefix('.open-')}"]
    assert path.read_bytes() == data  # not cut: its writer may be mid-write
    assert _open_files(landing) == [path]


def test_recover_leaves_a_hidden_file_it_did_not_name_alone(landing):
    folder = landing / "api"
    folder.mkdir(parents=True)
    stray = folder / ".open-copy.ndjson"
    stray.write_bytes(b'{"half')
    dead = _leftover(landing, DEAD_PID, _lines("b", 1)[0])
    assert _writer(landing).recover() == [f"2026-01-02/{dead.name.removeprefix('.open-')}"]
    assert stray.read_bytes() == b'{"half'  # neither cut nor renamed: not the writer's


def test_a_recovered_file_sorts_before_the_new_writers_files(landing):
    _leftover(landing, DEAD_PID, _lines("old", 1)[0])
    writer = _writer(landing, rotate_events=1)
    (old,) = writer.recover()
    writer.append(_lines("new", 1))
    assert _rotated(landing)[0] == old
    assert len(_rotated(landing)) == 2


# --- backlog -------------------------------------------------------------------------------


def test_the_backlog_is_what_the_ingest_has_not_read_open_file_included(landing):
    writer = _writer(landing, rotate_events=2)
    writer.recover()
    a, b, c = (b"".join(_lines(tag, n)) for tag, n in (("a", 2), ("b", 2), ("c", 1)))
    writer.append(_lines("a", 2))
    writer.append(_lines("b", 2))
    writer.append(_lines("c", 1))
    first, second = _rotated(landing)
    assert writer.unrotated_bytes() == len(c)
    assert writer.backlog_bytes(None) == len(a) + len(b) + len(c)
    assert writer.backlog_bytes(first) == len(b) + len(c)
    # forgotten once passed: asking with an older mark does not bring it back
    assert writer.backlog_bytes(None) == len(b) + len(c)
    assert writer.backlog_bytes(second) == len(c)
    assert writer.backlog_bytes(first) == len(c)
    writer.close()
    assert writer.backlog_bytes(second) == len(c)
    assert writer.backlog_bytes("9999-12-31/z") == 0


def test_recover_counts_the_rotated_files_after_ingested_through(landing):
    writer = _writer(landing, rotate_events=1)
    for tag in ("a", "b", "c"):
        writer.append(_lines(tag, 3))
    first, second, third = _rotated(landing)
    size = len(b"".join(_lines("a", 3)))
    # an earlier day's file that is not on record: the mark is past its whole day
    earlier = landing / "api" / "2020-01-01" / "20200101T000000000000Z-1-000001.ndjson"
    earlier.parent.mkdir()
    earlier.write_bytes(b"x\n")

    restarted = _writer(landing)
    assert restarted.recover(ingested_through=first) == []
    assert restarted.backlog_bytes(first) == 2 * size
    assert restarted.backlog_bytes(third) == 0

    from_scratch = _writer(landing)
    from_scratch.recover(ingested_through=None)
    assert from_scratch.backlog_bytes(None) == 3 * size + 2
    assert from_scratch.backlog_bytes(second) == size


# --- concurrency and failures --------------------------------------------------------------


class _FsyncCounter:
    """Counts fsyncs of regular files (the landing file), not of folders."""

    def __init__(self, monkeypatch, gate: threading.Event | None = None) -> None:
        self.files = 0
        self.entered = threading.Event()
        self._real = os.fsync
        self._gate = gate
        self._lock = threading.Lock()
        monkeypatch.setattr(landing_writer.os, "fsync", self)

    def __call__(self, fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            with self._lock:
                self.files += 1
            self.entered.set()
            if self._gate is not None:
                assert self._gate.wait(10)
        self._real(fd)


def test_concurrent_appends_keep_every_line_once_and_whole(landing, monkeypatch):
    threads_n, batches, rotate_events = 8, 200, 500
    counter = _FsyncCounter(monkeypatch)
    writer = _writer(landing, rotate_events=rotate_events)
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def produce(t: int) -> None:
        try:
            start.wait()
            for b in range(batches):
                writer.append(_lines(f"t{t}-b{b:03d}", 1 + (t + b) % 3))
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads_n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not errors and not any(w.is_alive() for w in workers)
    writer.close()

    assert _open_files(landing) == []
    names = _rotated(landing)
    data = b"".join((landing / "api" / n).read_bytes() for n in names)
    ids = [json.loads(line)["event_id"] for line in data.splitlines()]
    expected = [
        f"t{t}-b{b:03d}-{i}"
        for t in range(threads_n)
        for b in range(batches)
        for i in range(1 + (t + b) % 3)
    ]
    assert sorted(ids) == sorted(expected)
    assert len(ids) == len(set(ids))
    for t in range(threads_n):  # each producer's events in the order it sent them
        mine = [i for i in ids if i.startswith(f"t{t}-")]
        assert mine == [e for e in expected if e.startswith(f"t{t}-")]
    for n in names[:-1]:  # rotated as soon as the count is reached, never split a batch
        events = len((landing / "api" / n).read_bytes().splitlines())
        assert rotate_events <= events < rotate_events + 3
    appends = threads_n * batches
    # an append's own fsync at most, one per rotation (the last one by close)
    assert 0 < counter.files <= appends + len(names)


def test_appends_waiting_on_an_fsync_share_the_next_one(landing, monkeypatch):
    gate = threading.Event()
    counter = _FsyncCounter(monkeypatch, gate)
    writer = _writer(landing)
    first = threading.Thread(target=writer.append, args=(_lines("first", 1),))
    first.start()
    assert counter.entered.wait(10)  # the first append is inside its fsync
    others = [threading.Thread(target=writer.append, args=(_lines(f"o{i}", 1),)) for i in range(5)]
    for other in others:
        other.start()
    total = len(b"".join(_lines("first", 1) + [_lines(f"o{i}", 1)[0] for i in range(5)]))
    deadline = time.monotonic() + 10
    while writer.unrotated_bytes() < total:  # all five written, waiting for the sync lock
        assert time.monotonic() < deadline
        time.sleep(0.001)
    gate.set()
    for thread in [first, *others]:
        thread.join(10)
        assert not thread.is_alive()
    assert counter.files == 2  # the first append's, then one for the five that waited


def test_a_failed_write_leaves_whole_lines_and_the_next_append_works(landing, monkeypatch):
    writer = _writer(landing, rotate_events=4)
    writer.append(_lines("a", 2))
    real_write_all = landing_writer._write_all

    def half_then_full_disk(fd: int, data: bytes) -> None:
        real_write_all(fd, data[: len(data) // 2 + 1])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(landing_writer, "_write_all", half_then_full_disk)
    with pytest.raises(OSError, match="No space left"):
        writer.append(_lines("b", 2))
    (opened,) = _open_files(landing)
    assert opened.read_bytes() == b"".join(_lines("a", 2))
    assert writer.unrotated_bytes() == len(b"".join(_lines("a", 2)))

    monkeypatch.setattr(landing_writer, "_write_all", real_write_all)
    writer.append(_lines("c", 1))
    # the refused batch's events are not counted: 3 < 4, still open
    assert _open_files(landing) == [opened]
    assert opened.read_bytes() == b"".join(_lines("a", 2) + _lines("c", 1))
    writer.append(_lines("d", 1))
    (name,) = _rotated(landing)
    lines = (landing / "api" / name).read_bytes().splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == ["a-0", "a-1", "c-0", "d-0"]


def test_a_leftover_from_yesterday_lands_in_its_own_day(landing):
    yesterday = datetime.now(UTC) - timedelta(days=1)
    stamp = yesterday.strftime("%Y%m%dT%H%M%S%fZ")
    folder = landing / "api"
    folder.mkdir(parents=True)
    (folder / f".open-{stamp}-{DEAD_PID}-000001.ndjson").write_bytes(b"{}\n")
    (name,) = _writer(landing).recover()
    assert name == f"{yesterday.date().isoformat()}/{stamp}-{DEAD_PID}-000001.ndjson"
