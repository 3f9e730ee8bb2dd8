"""The alert outbox (SPEC 9): the notifications to POST, what fired, and what each delivery did.

Why a SQLite file and not a table in the DuckDB warehouse: delivering means HTTP calls with
timeouts and retries, and DuckDB has a single writer. A delivery holding the warehouse open
would stall a close for as long as a slow receiver takes, and `meterbook notify` must work
while a close runs. SQLite in WAL mode lets a delivery write its outcome row by row while
others read, and its lock is only held for the few milliseconds of each write.

The file is `$METERBOOK_HOME/alerts/outbox.sqlite`. Two tables:

- `notifications`: one row per notification, keyed by its Idempotency-Key, with the exact
  body bytes that are POSTed (every re-send signs and sends the same bytes), its status
  (pending -> delivered | rejected), the total attempts and the last answer or error;
- `fired_thresholds`: (alert, subscription_id, period_start, threshold) of every threshold
  fired, written in the same transaction as its notification, so a threshold counts as fired
  exactly when its notification is queued, never one without the other.

Timestamps are UTC ISO 8601 (`2026-10-20T13:00:00.123Z`), from `now_utc()` (so METERBOOK_NOW
fixes them in tests and replays).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from orchestration.billing.alerts.firing import (
    AlertReading,
    FiredThreshold,
    Notification,
    notifications_due,
)
from orchestration.warehouse.outbox import OUTBOX_DDL
from orchestration.warehouse.sqlite_file import SqliteFile

__all__ = ["STATUSES", "Outbox", "OutboxRow", "outbox_path"]

STATUSES = ("pending", "delivered", "rejected")

_COLUMNS = (
    "key, alert, customer_id, subscription_id, period_start, metric, meter, value, threshold,"
    " thresholds_crossed, body, status, attempts, last_status_code, last_error, created_at,"
    " last_attempt_at, delivered_at"
)


def outbox_path(home: Path) -> Path:
    return Path(home) / "alerts" / "outbox.sqlite"


@dataclass(frozen=True)
class OutboxRow:
    key: str
    alert: str
    customer_id: str
    subscription_id: str
    period_start: date
    metric: str
    meter: str | None
    value: str
    threshold: str
    thresholds_crossed: tuple[str, ...]
    body: bytes
    status: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: str
    last_attempt_at: str | None
    delivered_at: str | None

    @classmethod
    def from_record(cls, record: Sequence) -> OutboxRow:
        values = list(record)
        values[4] = date.fromisoformat(values[4])
        values[9] = tuple(json.loads(values[9]))
        values[10] = bytes(values[10])
        return cls(*values)


class Outbox(SqliteFile):
    """The outbox file. Each call opens its own short connection, so an `Outbox` can be shared
    across threads and processes hold no lock between calls."""

    DDL = OUTBOX_DDL
    SCHEMA_VERSION = 1
    FOREIGN_KEYS = True

    # --- filling --------------------------------------------------------------------------

    def fired(self) -> set[FiredThreshold]:
        with self._reading() as con:
            return _fired(con)

    def enqueue(self, notifications: Iterable[Notification]) -> int:
        """Queue the notifications as pending, with the thresholds they fire, all or none.

        Idempotent: a notification whose key is queued already is skipped, and so is one
        that would fire a threshold already fired (its caller read `fired()` before another
        process queued that threshold); the next check computes it afresh. Returns how many
        were queued.
        """
        with self._writing() as con:
            return len(self._insert(con, notifications))

    def enqueue_due(self, readings: Iterable[AlertReading]) -> list[Notification]:
        """`notifications_due` against what fired, and `enqueue`, in one transaction: two
        processes checking at once cannot both fire the same threshold."""
        readings = list(readings)
        with self._writing() as con:
            return self._insert(con, notifications_due(readings, _fired(con)))

    def _insert(
        self, con: sqlite3.Connection, notifications: Iterable[Notification]
    ) -> list[Notification]:
        created_at = self._now()
        queued = []
        for notification in notifications:
            if _queued_already(con, notification):
                continue
            con.execute(
                "INSERT INTO notifications (key, alert, customer_id, subscription_id,"
                " period_start, metric, meter, value, threshold, thresholds_crossed, body,"
                " status, attempts, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?)",
                _notification_values(notification) + (created_at,),
            )
            con.executemany(
                "INSERT INTO fired_thresholds VALUES (?, ?, ?, ?, ?)",
                [(a, s, p.isoformat(), t, notification.key) for a, s, p, t in notification.fired()],
            )
            queued.append(notification)
        return queued

    # --- reading ----------------------------------------------------------------------------

    def pending(self) -> list[OutboxRow]:
        """Oldest first, so a backlog drains in the order the alerts fired."""
        return self._select("WHERE status = 'pending' ORDER BY created_at, key")

    def rows(self) -> list[OutboxRow]:
        return self._select("ORDER BY created_at, key")

    def get(self, key: str) -> OutboxRow | None:
        found = self._select("WHERE key = ?", (key,))
        return found[0] if found else None

    def _select(self, where: str, params: tuple = ()) -> list[OutboxRow]:
        with self._reading() as con:
            records = con.execute(f"SELECT {_COLUMNS} FROM notifications {where}", params)
            return [OutboxRow.from_record(r) for r in records.fetchall()]

    # --- outcomes -------------------------------------------------------------------------
    # `attempts` is the number of POSTs the reporting delivery made; the row keeps the total
    # over every delivery. Only a pending row changes: a delivery racing another one cannot
    # turn a 'delivered' back into anything else.

    def mark_delivered(self, key: str, status_code: int, attempts: int) -> bool:
        now = self._now()
        return self._update(
            key,
            "status = 'delivered', attempts = attempts + ?, last_status_code = ?,"
            " last_error = NULL, last_attempt_at = ?, delivered_at = ?",
            (attempts, status_code, now, now),
        )

    def mark_rejected(self, key: str, status_code: int, attempts: int, reason: str) -> bool:
        """A 4xx: the receiver refused this body, and the same body would be refused again."""
        return self._update(
            key,
            "status = 'rejected', attempts = attempts + ?, last_status_code = ?,"
            " last_error = ?, last_attempt_at = ?",
            (attempts, status_code, reason, self._now()),
        )

    def record_attempt_failure(
        self, key: str, attempts: int, reason: str, status_code: int | None = None
    ) -> bool:
        """5xx, timeouts, refused connections, once this delivery's retries ran out: the row
        stays pending for the next run or `meterbook notify`."""
        return self._update(
            key,
            "attempts = attempts + ?, last_status_code = ?, last_error = ?, last_attempt_at = ?",
            (attempts, status_code, reason, self._now()),
        )

    def requeue_rejected(self, keys: Iterable[str] | None = None) -> int:
        """Rejected rows (all, or those of `keys`) back to pending, for an operator who fixed
        what made the receiver refuse them (a rotated secret, a receiver bug): deliveries
        never retry a 4xx by themselves. They go again with the same key and body."""
        with self._writing() as con:
            if keys is None:
                return con.execute(
                    "UPDATE notifications SET status = 'pending' WHERE status = 'rejected'"
                ).rowcount
            return sum(
                con.execute(
                    "UPDATE notifications SET status = 'pending'"
                    " WHERE status = 'rejected' AND key = ?",
                    (key,),
                ).rowcount
                for key in keys
            )

    def _update(self, key: str, assignments: str, params: tuple) -> bool:
        with self._writing() as con:
            changed = con.execute(
                f"UPDATE notifications SET {assignments} WHERE key = ? AND status = 'pending'",
                (*params, key),
            ).rowcount
            if not changed and not _exists(con, key):
                raise KeyError(f"no notification {key} in the outbox")
        return bool(changed)


def _fired(con: sqlite3.Connection) -> set[FiredThreshold]:
    records = con.execute(
        "SELECT alert, subscription_id, period_start, threshold FROM fired_thresholds"
    )
    return {(a, s, date.fromisoformat(p), t) for a, s, p, t in records}


def _exists(con: sqlite3.Connection, key: str) -> bool:
    return con.execute("SELECT 1 FROM notifications WHERE key = ?", (key,)).fetchone() is not None


def _queued_already(con: sqlite3.Connection, notification: Notification) -> bool:
    if _exists(con, notification.key):
        return True
    return any(
        con.execute(
            "SELECT 1 FROM fired_thresholds"
            " WHERE alert = ? AND subscription_id = ? AND period_start = ? AND threshold = ?",
            (a, s, p.isoformat(), t),
        ).fetchone()
        for a, s, p, t in notification.fired()
    )


def _notification_values(n: Notification) -> tuple:
    return (
        n.key,
        n.alert,
        n.customer_id,
        n.subscription_id,
        n.period_start.isoformat(),
        n.metric,
        n.meter,
        n.value_text,
        n.threshold,
        json.dumps(list(n.thresholds_crossed)),
        n.body(),
    )
