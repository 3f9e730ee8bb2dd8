"""The dunning outbox (SPEC 11, STYLE 12): every (invoice, step) decided, the message to send
for it, and what sending it did. The tables and the life of a row are in
`orchestration/warehouse/dunning_outbox.py`.

Why a SQLite file and not a table in the DuckDB warehouse: sending means SMTP conversations
with timeouts, and DuckDB has a single writer. A send holding the warehouse open would stall a
close for as long as a slow mail server takes. SQLite in WAL mode lets the sender record each
outcome as it happens while others read, and its lock is held for milliseconds per write.

Exactly once: a step is decided once (the primary key), in one transaction with the other
decisions of the run and the cancellations. Sending takes the sender lock (one sender per
outbox at a time: a flock, dropped by the kernel when its holder dies), marks the row
`sending` (committed, synchronous) before the SMTP transaction starts and `sent` right after
the server accepted it. A process killed in between leaves that one row `sending`; the next
sender, which holds the lock and so knows its previous holder is gone, sends it again with
the same bytes and Message-ID. No other row can be in doubt.

The file is `$METERBOOK_HOME/dunning/outbox.sqlite`. Timestamps are UTC ISO 8601 from the
injected clock (`now_utc()` by default, so METERBOOK_NOW fixes them in tests and replays).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from orchestration.locking import LOCK_WAIT_SECONDS, workspace_lock
from orchestration.warehouse.dunning_outbox import DUNNING_OUTBOX_DDL, DUNNING_STATUSES
from orchestration.warehouse.sqlite_file import SqliteFile

__all__ = [
    "DUNNING_STATUSES",
    "DunningOutbox",
    "DunningRow",
    "NewRow",
    "dunning_outbox_path",
]

OPEN_STATUSES = ("pending", "sending")  # not settled yet: may still be sent, or cancelled

_COLUMNS = (
    "invoice_id, step, step_day, number, customer_id, currency, amount_due, days_overdue,"
    " recipients, message_id, sender, subject, message, status, attempts, last_error,"
    " decided_at, sending_at, sent_at, closed_at, close_reason"
)


_OPEN_INVOICES_SQL = (
    "SELECT DISTINCT invoice_id FROM dunning_messages WHERE status IN ('pending', 'sending')"
)


def dunning_outbox_path(home: Path) -> Path:
    return Path(home) / "dunning" / "outbox.sqlite"


@dataclass(frozen=True)
class NewRow:
    """A decision to record: a message to send (`pending`) or a step passed over (`skipped`)."""

    invoice_id: str
    step: str
    step_day: int
    number: str
    customer_id: str
    currency: str
    amount_due: str
    days_overdue: int
    recipients: tuple[str, ...]
    message_id: str
    sender: str
    subject: str
    message: bytes | None  # None when skipped
    status: str  # pending | skipped
    close_reason: str | None = None


@dataclass(frozen=True)
class DunningRow:
    invoice_id: str
    step: str
    step_day: int
    number: str
    customer_id: str
    currency: str
    amount_due: str
    days_overdue: int
    recipients: tuple[str, ...]
    message_id: str
    sender: str
    subject: str
    message: bytes | None
    status: str
    attempts: int
    last_error: str | None
    decided_at: str
    sending_at: str | None
    sent_at: str | None
    closed_at: str | None
    close_reason: str | None

    @classmethod
    def from_record(cls, record: Sequence) -> DunningRow:
        values = list(record)
        values[8] = tuple(json.loads(values[8]))
        values[12] = None if values[12] is None else bytes(values[12])
        return cls(*values)

    @property
    def key(self) -> tuple[str, str]:
        return (self.invoice_id, self.step)


class DunningOutbox(SqliteFile):
    """The outbox file. Each call opens its own short connection: an instance can be shared
    across threads, and processes hold no lock between calls."""

    DDL = DUNNING_OUTBOX_DDL
    SCHEMA_VERSION = 1

    # --- deciding -------------------------------------------------------------------------

    def decided(self) -> dict[str, dict[str, int]]:
        """invoice_id -> {step: step_day} of every row, whatever its status."""
        with self._reading() as con:
            return _decided(con)

    def decide(
        self,
        decide: Callable[[dict[str, dict[str, int]]], tuple[Iterable[NewRow], Iterable[tuple]]],
    ) -> tuple[list[NewRow], list[DunningRow]]:
        """Read what is decided, let `decide` choose (new rows, (invoice_id, reason) to cancel)
        and record both, all in one transaction: two runs at once cannot decide one step twice.
        Returns the rows recorded and the rows cancelled."""
        with self._writing() as con:
            new_rows, cancellations = decide(_decided(con))
            now = self._now()
            recorded = [row for row in new_rows if _insert(con, row, now)]
            # most invoices that stopped being owed have nothing open: ask once, not per invoice
            open_ids = {i for (i,) in con.execute(_OPEN_INVOICES_SQL)}
            cancelled = [
                row
                for invoice_id, reason in cancellations
                if invoice_id in open_ids
                for row in _cancel(con, invoice_id, reason, now)
            ]
        return recorded, cancelled

    # --- reading ----------------------------------------------------------------------------

    def rows(self) -> list[DunningRow]:
        return self._select("ORDER BY decided_at, invoice_id, step_day")

    def get(self, invoice_id: str, step: str) -> DunningRow | None:
        found = self._select("WHERE invoice_id = ? AND step = ?", (invoice_id, step))
        return found[0] if found else None

    def open_rows(self, invoice_ids: Collection[str] | None = None) -> list[DunningRow]:
        """Rows to send: interrupted ones (`sending`) first, then the pending, oldest decision
        first; only those of `invoice_ids` when given."""
        rows = self._select(
            "WHERE status IN ('pending', 'sending')"
            " ORDER BY status = 'pending', decided_at, invoice_id, step_day"
        )
        if invoice_ids is None:
            return rows
        wanted = set(invoice_ids)
        return [row for row in rows if row.invoice_id in wanted]

    def last_sent(self) -> dict[str, tuple[str, str]]:
        """invoice_id -> (step, sent_at) of its latest reminder sent."""
        with self._reading() as con:
            records = con.execute(
                "SELECT invoice_id, step, sent_at FROM dunning_messages WHERE status = 'sent'"
                " ORDER BY invoice_id, sent_at, step_day"
            ).fetchall()
        return {invoice_id: (step, sent_at) for invoice_id, step, sent_at in records}

    def counts(self) -> dict[str, int]:
        with self._reading() as con:
            found = dict(
                con.execute("SELECT status, count(*) FROM dunning_messages GROUP BY status")
            )
        return {status: found.get(status, 0) for status in DUNNING_STATUSES}

    def _select(self, where: str, params: tuple = ()) -> list[DunningRow]:
        with self._reading() as con:
            records = con.execute(f"SELECT {_COLUMNS} FROM dunning_messages {where}", params)
            return [DunningRow.from_record(r) for r in records.fetchall()]

    # --- sending ----------------------------------------------------------------------------

    @contextmanager
    def sender(self, wait_seconds: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
        """The one sender of this outbox: a row found `sending` while holding this was left by
        a process that died mid-send (module docstring)."""
        with workspace_lock(self.path.parent, "dunning-sender", wait_seconds):
            yield

    def mark_sending(self, invoice_id: str, step: str) -> bool:
        """Committed before the SMTP transaction starts; False when the row is no longer open
        (cancelled meanwhile by a run that saw the invoice paid)."""
        return self._update(
            invoice_id,
            step,
            "status = 'sending', attempts = attempts + 1, sending_at = ?",
            (self._now(),),
            OPEN_STATUSES,
        )

    def mark_sent(self, invoice_id: str, step: str, note: str | None = None) -> bool:
        return self._update(
            invoice_id,
            step,
            "status = 'sent', sent_at = ?, last_error = ?",
            (self._now(), note),
            ("sending",),
        )

    def mark_retry(self, invoice_id: str, step: str, error: str) -> bool:
        """Not sent (the server was unreachable or answered 4xx): pending for the next run."""
        return self._update(
            invoice_id, step, "status = 'pending', last_error = ?", (error,), ("sending",)
        )

    def mark_failed(self, invoice_id: str, step: str, error: str) -> bool:
        """Refused for good (5xx): never sent again by itself."""
        return self._update(
            invoice_id,
            step,
            "status = 'failed', last_error = ?, closed_at = ?, close_reason = ?",
            (error, self._now(), "refused by the mail server"),
            ("sending",),
        )

    def _update(
        self, invoice_id: str, step: str, assignments: str, params: tuple, from_statuses: tuple
    ) -> bool:
        placeholders = ", ".join("?" for _ in from_statuses)
        with self._writing() as con:
            changed = con.execute(
                f"UPDATE dunning_messages SET {assignments}"
                f" WHERE invoice_id = ? AND step = ? AND status IN ({placeholders})",
                (*params, invoice_id, step, *from_statuses),
            ).rowcount
            if not changed and not _exists(con, invoice_id, step):
                raise KeyError(f"no dunning step {step} of invoice {invoice_id} in the outbox")
        return bool(changed)


def _decided(con: sqlite3.Connection) -> dict[str, dict[str, int]]:
    decided: dict[str, dict[str, int]] = {}
    for invoice_id, step, day in con.execute(
        "SELECT invoice_id, step, step_day FROM dunning_messages"
    ):
        decided.setdefault(invoice_id, {})[step] = day
    return decided


def _exists(con: sqlite3.Connection, invoice_id: str, step: str) -> bool:
    found = con.execute(
        "SELECT 1 FROM dunning_messages WHERE invoice_id = ? AND step = ?", (invoice_id, step)
    )
    return found.fetchone() is not None


def _insert(con: sqlite3.Connection, row: NewRow, now: str) -> bool:
    if row.status not in ("pending", "skipped"):
        raise ValueError(f"a decision is pending or skipped, not {row.status!r}")
    closed_at = now if row.status == "skipped" else None
    inserted = con.execute(
        "INSERT OR IGNORE INTO dunning_messages (invoice_id, step, step_day, number,"
        " customer_id, currency, amount_due, days_overdue, recipients, message_id, sender,"
        " subject, message, status, attempts, decided_at, closed_at, close_reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
        (
            row.invoice_id,
            row.step,
            row.step_day,
            row.number,
            row.customer_id,
            row.currency,
            row.amount_due,
            row.days_overdue,
            json.dumps(list(row.recipients)),
            row.message_id,
            row.sender,
            row.subject,
            row.message,
            row.status,
            now,
            closed_at,
            row.close_reason,
        ),
    )
    return inserted.rowcount == 1


def _cancel(con: sqlite3.Connection, invoice_id: str, reason: str, now: str) -> list[DunningRow]:
    records = con.execute(
        f"SELECT {_COLUMNS} FROM dunning_messages"
        " WHERE invoice_id = ? AND status IN ('pending', 'sending')",
        (invoice_id,),
    ).fetchall()
    cancelled = []
    for record in records:
        row = DunningRow.from_record(record)
        why = reason
        if row.status == "sending":  # its sender died mid-send: the server may have it
            why += " (its sending had been interrupted: it may have been delivered)"
        con.execute(
            "UPDATE dunning_messages SET status = 'cancelled', closed_at = ?, close_reason = ?"
            " WHERE invoice_id = ? AND step = ?",
            (now, why, row.invoice_id, row.step),
        )
        cancelled.append(replace(row, status="cancelled", closed_at=now, close_reason=why))
    return cancelled
