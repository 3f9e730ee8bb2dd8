"""Accepted events onto disk before `POST /v1/events` answers (SPEC 2.1, 9): landing files
under `landing/events/api/`, which the ingest reads like any producer's.

The open file has a hidden name (`api/.open-…`), which the ingest never lists (discovery
ignores every path part starting with '.'), so it never reads half a file. A batch is
appended and fsynced before its answer; the file is renamed to its final name
`api/<day>/<opened>-<pid>-<seq>.ndjson` (then the folder fsynced) once it is
`rotate_seconds` old or holds `rotate_events` events. A process killed with a file open
leaves it hidden: the next writer on the same workspace (`recover`) cuts any line half
written (never acknowledged: its batch had not been fsynced) and renames it, so nothing
acknowledged is lost, and a producer's retry of the same batch bills nothing twice: its
events are duplicates for the ingest or, should its file hold exactly the bytes of an earlier
one, the file is a copy (SPEC 2.1), recorded and not read again.

Final names sort by the time the file was opened (its oldest event's arrival, which
`ingest.refresh_status.arrival_of` reads back for the lag of a refresh) and, within one
process, in writing order; the ingest reads files in path order, so events keep the order
they were acknowledged in.

Appends from concurrent requests share fsyncs (group commit): each waits until the file is
synced past its own bytes, and one fsync covers every batch written before it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from orchestration.ingest.discovery import API_FOLDER, API_STAMP, api_file_opened

log = logging.getLogger(__name__)

OPEN_PREFIX = ".open-"


@dataclass
class _OpenFile:
    path: Path
    fd: int
    opened: datetime
    written: int = 0  # bytes
    synced: int = 0
    events: int = 0


@dataclass
class Backlog:
    """What the writer holds that the ingest has not read: the open file, and its rotated
    files with a name after the last one the ingest recorded (`ingested_through`)."""

    rotated: dict[str, int] = field(default_factory=dict)  # final rel name -> bytes

    def forget_through(self, ingested_through: str | None) -> None:
        if ingested_through is not None:
            for name in [n for n in self.rotated if n <= ingested_through]:
                del self.rotated[name]


class LandingWriter:
    def __init__(self, landing_dir: Path, rotate_seconds: float, rotate_events: int) -> None:
        self.folder = landing_dir / API_FOLDER
        self.rotate_seconds, self.rotate_events = rotate_seconds, rotate_events
        self.backlog = Backlog()
        self._lock = threading.Lock()  # the open file: writes, rotation
        self._sync_lock = threading.Lock()  # one fsync at a time; others wait and share it
        self._file: _OpenFile | None = None
        self._seq = 0

    def recover(self, ingested_through: str | None = None) -> list[str]:
        """Renames the files writers that are gone left open (see the module); returns their
        final names. Then counts the rotated files named after `ingested_through` (the last
        one the ingest recorded): the backlog the ingest has not read yet."""
        self.folder.mkdir(parents=True, exist_ok=True)
        recovered = []
        for path in sorted(self.folder.glob(f"{OPEN_PREFIX}*.ndjson")):
            if _writer_alive(path.name):
                continue
            try:
                name = _final_name(path.name[len(OPEN_PREFIX) :])
            except ValueError:  # not a name a writer gives: someone else's file, left alone
                log.warning("ignoring %s: not a file the events API opened", path.name)
                continue
            _cut_half_line(path)
            if path.stat().st_size == 0:
                path.unlink()
                continue
            self._publish(path, name)
            recovered.append(name)
            log.warning("recovered %s, left open by a writer that stopped", name)
        self._count_backlog(ingested_through)
        return recovered

    def _count_backlog(self, ingested_through: str | None) -> None:
        first_day = ingested_through.split("/", 1)[0] if ingested_through else ""
        for day in sorted(p for p in self.folder.iterdir() if p.is_dir()):
            if day.name.startswith(".") or day.name < first_day:
                continue  # days before the last ingested file's hold nothing unread
            for path in day.glob("*.ndjson"):
                if not path.name.startswith("."):
                    self.backlog.rotated[_rel(self.folder, path)] = path.stat().st_size
        self.backlog.forget_through(ingested_through)

    def append(self, lines: list[bytes]) -> None:
        """Writes the lines and returns once they are on disk (fsynced)."""
        data = b"".join(lines)
        with self._lock:
            handle = self._file or self._open()
            try:
                _write_all(handle.fd, data)
            except OSError:
                # a disk full mid-batch: the half written is cut, so the next batch starts
                # on a line of its own; this one is answered with an error, not acknowledged
                os.ftruncate(handle.fd, handle.written)
                raise
            handle.written += len(data)
            handle.events += len(lines)
            end = handle.written
            if handle.events >= self.rotate_events:
                self._rotate()
        self._sync(handle, end)

    def rotate_if_due(self, now: float | None = None) -> str | None:
        """Rotates the open file once it is `rotate_seconds` old; its final name, or None."""
        now = time.time() if now is None else now
        with self._lock:
            handle = self._file
            if handle is None or now - handle.opened.timestamp() < self.rotate_seconds:
                return None
            return self._rotate()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._rotate()

    def unrotated_bytes(self) -> int:
        handle = self._file
        return 0 if handle is None else handle.written

    def backlog_bytes(self, ingested_through: str | None) -> int:
        with self._lock:
            self.backlog.forget_through(ingested_through)
            return self.unrotated_bytes() + sum(self.backlog.rotated.values())

    def _open(self) -> _OpenFile:
        self._seq += 1
        opened = datetime.now(UTC)
        name = f"{OPEN_PREFIX}{opened.strftime(API_STAMP)}-{os.getpid()}-{self._seq:06d}.ndjson"
        path = self.folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        _fsync_folder(self.folder)  # the file itself survives a crash, not only its bytes
        self._file = _OpenFile(path, fd, opened)
        return self._file

    def _rotate(self) -> str:
        """With `_lock` held: the open file synced, closed and given its final name."""
        handle = self._file
        assert handle is not None
        with self._sync_lock:
            os.fsync(handle.fd)
            handle.synced = handle.written
            os.close(handle.fd)
        self._file = None
        name = _final_name(handle.path.name[len(OPEN_PREFIX) :])
        self._publish(handle.path, name)
        self.backlog.rotated[name] = handle.written
        return name

    def _publish(self, path: Path, name: str) -> None:
        final = self.folder / name
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, final)
        _fsync_folder(final.parent)
        _fsync_folder(self.folder)

    def _sync(self, handle: _OpenFile, end: int) -> None:
        with self._sync_lock:
            if handle.synced >= end:  # a later append's fsync, or the rotation, covered it
                return
            upto = handle.written  # everything written so far is covered by this fsync
            os.fsync(handle.fd)
            handle.synced = upto


def _final_name(stem: str) -> str:
    """`<opened>-<pid>-<seq>.ndjson` -> `<day>/<opened>-<pid>-<seq>.ndjson`"""
    opened = api_file_opened(stem)
    if opened is None:
        raise ValueError(f"not a name the events API gives: {stem!r}")
    return f"{opened.date().isoformat()}/{stem}"


def _rel(folder: Path, path: Path) -> str:
    return path.relative_to(folder).as_posix()


def _writer_alive(name: str) -> bool:
    try:
        pid = int(name[len(OPEN_PREFIX) :].split("-")[1])
    except (IndexError, ValueError):
        return False
    if pid == os.getpid():
        return False  # this process has not opened it: an earlier process with the same pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cut_half_line(path: Path) -> None:
    """Drops bytes after the last newline: a write the crash interrupted, never answered."""
    size = path.stat().st_size
    if size == 0:
        return
    with open(path, "r+b") as handle:
        chunk = min(size, 1 << 20)
        while True:
            handle.seek(size - chunk)
            tail = handle.read(chunk)
            cut = tail.rfind(b"\n")
            if cut >= 0 or chunk == size:
                keep = size - chunk + cut + 1 if cut >= 0 else 0
                break
            chunk = min(size, chunk * 2)
        if keep != size:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
