"""A SQLite file beside the warehouse, for the outboxes (alerts, dunning): side effects recorded
one row at a time while a close may hold the DuckDB warehouse (its single writer).

WAL mode lets a sender record each outcome while others read; each call opens its own short
connection, so an instance can be shared across threads and processes hold no lock between
calls; a write takes the lock up front (BEGIN IMMEDIATE), so what it read cannot change under
it before it commits; `synchronous = FULL`, so a committed outcome survives a power cut (one
lost could mean a message sent twice). Timestamps are UTC ISO 8601 with milliseconds, from an
injected clock (`now_utc()` by default: METERBOOK_NOW fixes them in tests and replays).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from orchestration.workspace import now_utc

# Long enough to outwait another process's write (each is milliseconds), short enough that a
# wedged writer surfaces as an error rather than a hung close.
BUSY_TIMEOUT_SECONDS = 30.0


def timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class SqliteFile:
    """Subclasses set `DDL` (statements run at every open, so `IF NOT EXISTS`),
    `SCHEMA_VERSION` and whether SQLite enforces their foreign keys."""

    DDL: tuple[str, ...] = ()
    SCHEMA_VERSION = 1
    FOREIGN_KEYS = False

    def __init__(
        self,
        path: Path | str,
        *,
        clock: Callable[[], datetime] = now_utc,
        busy_timeout_seconds: float = BUSY_TIMEOUT_SECONDS,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy_timeout = busy_timeout_seconds
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._create()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN ourselves, so a write takes the lock up front
        con = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        con.execute("PRAGMA synchronous = FULL")
        if self.FOREIGN_KEYS:
            con.execute("PRAGMA foreign_keys = ON")
        return con

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            yield con
        finally:
            con.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One transaction holding the write lock from its first statement (IMMEDIATE)."""
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()

    def _create(self) -> None:
        with self._reading() as con:
            con.execute("PRAGMA journal_mode = WAL")  # a property of the file: set once
        with self._writing() as con:
            for statement in self.DDL:
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {self.SCHEMA_VERSION}")

    def _now(self) -> str:
        return timestamp(self._clock())
