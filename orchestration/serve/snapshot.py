"""The published snapshot held in memory, swapped for each new file the publisher writes.

The publisher replaces `published/snapshot.json` with `os.replace`, so any open sees a whole
file. A background thread stats the path every `poll_seconds` and loads a file it has not
seen; requests read `SnapshotStore.current`, one attribute read that gives them one
snapshot for the whole request, and never wait for a load: the new snapshot is built aside
and the reference swapped when it is complete. A file that cannot be read as a snapshot is
logged and skipped, and the previous snapshot goes on being served.

The work is spread out so that the thread answering requests never waits long for the GIL:
the loader reads a customer at a time (loading.py) and pauses every millisecond, and a
snapshot replaced is freed a batch of customers at a time once no request can still hold it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

from orchestration.serve.loading import Snapshot, load_snapshot

log = logging.getLogger(__name__)

# A thread waiting for the GIL asks for it after a 5 ms switch interval, and only if the
# holder has not released it meanwhile; the loader releases it at every read of the file,
# so the event loop, waiting, was seen to starve for 250 ms while a 10,000-customer snapshot
# loaded. Sleeping REST_SECONDS every WORK_SECONDS of loading lets it in (its waits for the
# GIL during a load: 1.1 ms at p99), for a load up to twice as long.
WORK_SECONDS = 0.001
REST_SECONDS = 0.0002

# Dropping a 10,000-customer snapshot frees ~70,000 objects in one go: ~7 ms with the GIL
# held. A replaced snapshot is kept RETIRED_SECONDS (a request that read it has long
# answered: the routes do not await) and then emptied FREED_PER_STEP customers at a time.
RETIRED_SECONDS = 1.0
FREED_PER_STEP = 500


class FileIdentity(NamedTuple):
    inode: int
    mtime_ns: int
    size: int

    @classmethod
    def of(cls, stat: os.stat_result) -> FileIdentity:
        return cls(stat.st_ino, stat.st_mtime_ns, stat.st_size)


class SnapshotStore:
    def __init__(self, path: Path, poll_seconds: float = 0.2) -> None:
        self.path = path
        self.poll_seconds = poll_seconds
        # replaced whole, never changed while current
        self.current: Snapshot | None = None
        self._seen: FileIdentity | None = None  # the file last loaded, or last refused
        self._retired: list[tuple[float, Snapshot]] = []  # (when replaced, snapshot)
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None

    def refresh(self) -> bool:
        """Load the file if it is not the one last seen; whether a new snapshot is served."""
        try:
            identity = FileIdentity.of(os.stat(self.path))
        except FileNotFoundError:  # nothing published yet
            return False
        if identity == self._seen:
            return False
        try:
            with open(self.path, "rb") as handle:
                # the file opened may be newer than the one just stat'ed
                identity = FileIdentity.of(os.fstat(handle.fileno()))
                if identity == self._seen:
                    return False
                snapshot = load_snapshot(handle, pause=_Pauses())
        except FileNotFoundError:  # removed since the stat: the next poll sees what is there
            return False
        except (ValueError, OSError) as exc:
            self._seen = identity  # refused once, and not read again until it changes
            self._refused(identity, exc)
            return False
        previous, self._seen, self.current = self.current, identity, snapshot
        if previous is not None:
            self._retired.append((time.monotonic(), previous))
        return True

    def free_retired(self, now: float | None = None) -> None:
        """Empty the snapshots replaced RETIRED_SECONDS ago, a batch at a time."""
        now = time.monotonic() if now is None else now
        while self._retired and now - self._retired[0][0] >= RETIRED_SECONDS:
            _, snapshot = self._retired.pop(0)
            # still held by a request after all? (this name and getrefcount's argument are 2)
            if sys.getrefcount(snapshot) > 2:
                self._retired.insert(0, (now, snapshot))
                return
            _empty(snapshot)

    def start(self) -> SnapshotStore:
        """Load what is published now, then watch for new files in a background thread."""
        self.refresh()
        self._stopping.clear()
        self._poller = threading.Thread(target=self._poll, name="meterbook-snapshot", daemon=True)
        self._poller.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._poller is not None:
            self._poller.join()
            self._poller = None

    def _poll(self) -> None:
        while not self._stopping.wait(self.poll_seconds):
            try:
                self.refresh()
                self.free_retired()
            except Exception:  # the poller must outlive whatever one poll meets
                log.exception("checking %s for a new snapshot failed", self.path)

    def _refused(self, identity: FileIdentity, exc: Exception) -> None:
        served = self.current
        log.warning(
            "%s (%d bytes) is not a snapshot this server can read (%s); still serving %s",
            self.path,
            identity.size,
            exc,
            f"the one published at {served.published_at}" if served else "none (answering 503)",
        )


def _empty(snapshot: Snapshot) -> None:
    pause = _Pauses()
    for table in (snapshot.entitlements, snapshot.usage):
        while table:
            for _ in range(min(FREED_PER_STEP, len(table))):
                table.popitem()
            pause()


class _Pauses:
    """Called between two steps: sleeps REST_SECONDS once WORK_SECONDS have passed."""

    def __init__(self) -> None:
        self._since = time.perf_counter()

    def __call__(self) -> None:
        if time.perf_counter() - self._since >= WORK_SECONDS:
            time.sleep(REST_SECONDS)
            self._since = time.perf_counter()
