"""The `meterbook_stripe` schema: which Stripe object is which of ours, and what Stripe says.

The mapping is a cache of what Stripe holds, never the only record: every Stripe object also
carries our id in its metadata, so a lost or rebuilt warehouse is re-mapped by lookups instead
of creating twins. Rows are written right after the Stripe calls they record (an invoice's
items together, once all exist), so a run killed anywhere leaves at worst a missing row (found
again in Stripe), never a row pointing at an object that does not exist. Credit notes and
refunds get one row each, written as soon as Stripe answered the call that made or found them.

`IdempotencyKeys` sends a create under our deterministic key, moved on a generation (in
`idempotency_generations`) after Stripe refused it; the invoice and credit-note pushes share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import duckdb

from integrations.stripe.errors import StripeApiError
from integrations.stripe.payloads import idempotency_key
from integrations.stripe.records import LedgerInvoice

T = TypeVar("T")


@dataclass(frozen=True)
class InvoiceMapping:
    invoice_id: str
    stripe_invoice_id: str
    stripe_customer_id: str
    stripe_status: str
    pushed_at: datetime | None
    voided_at: datetime | None


def customer_mapping(con: duckdb.DuckDBPyConnection, customer_id: str) -> str | None:
    # fetchall, not fetchone: DuckDB 2 keeps a half-read result open and refuses other work.
    rows = con.execute(
        "SELECT stripe_customer_id FROM meterbook_stripe.customers WHERE customer_id = ?",
        [customer_id],
    ).fetchall()
    return rows[0][0] if rows else None


def save_customer(
    con: duckdb.DuckDBPyConnection, customer_id: str, stripe_customer_id: str, now: datetime
) -> None:
    con.execute(
        """
        INSERT INTO meterbook_stripe.customers VALUES (?, ?, ?)
        ON CONFLICT (customer_id) DO UPDATE SET stripe_customer_id = excluded.stripe_customer_id
        """,
        [customer_id, stripe_customer_id, now],
    )


def invoice_mapping(con: duckdb.DuckDBPyConnection, invoice_id: str) -> InvoiceMapping | None:
    rows = con.execute(
        """
        SELECT invoice_id, stripe_invoice_id, stripe_customer_id, stripe_status, pushed_at,
               voided_at
        FROM meterbook_stripe.invoices WHERE invoice_id = ?
        """,
        [invoice_id],
    ).fetchall()
    return InvoiceMapping(*rows[0]) if rows else None


def save_invoice(
    con: duckdb.DuckDBPyConnection,
    invoice: LedgerInvoice,
    stripe_invoice: dict,
    now: datetime,
    *,
    expected_total_minor: int | None = None,
    pushed: bool = False,
    voided: bool = False,
) -> None:
    """Record (or refresh) the Stripe invoice of `invoice` as Stripe last showed it."""
    finalized = stripe_invoice.get("status") != "draft"
    con.execute(
        """
        INSERT INTO meterbook_stripe.invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (invoice_id) DO UPDATE SET
            stripe_invoice_id = excluded.stripe_invoice_id,
            stripe_customer_id = excluded.stripe_customer_id,
            stripe_status = excluded.stripe_status,
            expected_total_minor = coalesce(excluded.expected_total_minor, expected_total_minor),
            stripe_total_minor = coalesce(excluded.stripe_total_minor, stripe_total_minor),
            pushed_at = coalesce(pushed_at, excluded.pushed_at),
            voided_at = coalesce(voided_at, excluded.voided_at)
        """,
        [
            invoice.invoice_id,
            invoice.number,
            invoice.close_month,
            invoice.customer_id,
            stripe_invoice["customer"],
            stripe_invoice["id"],
            invoice.currency,
            stripe_invoice["status"],
            expected_total_minor,
            stripe_invoice.get("total") if finalized else None,
            now,
            now if pushed else None,
            now if voided else None,
        ],
    )


def save_items(
    con: duckdb.DuckDBPyConnection,
    invoice_id: str,
    items: list[tuple[str, dict]],
    now: datetime,
) -> None:
    """Record the Stripe items of one invoice, `(our ref, Stripe item)` each, in one statement."""
    if not items:
        return
    rows = [
        (invoice_id, ref, item["id"], item["invoice"], item["amount"], now) for ref, item in items
    ]
    placeholders = ", ".join(["(?, ?, ?, ?, ?, ?)"] * len(rows))
    con.execute(
        f"""
        INSERT INTO meterbook_stripe.invoice_items VALUES {placeholders}
        ON CONFLICT (invoice_id, item_ref) DO UPDATE SET
            stripe_invoice_item_id = excluded.stripe_invoice_item_id,
            stripe_invoice_id = excluded.stripe_invoice_id,
            amount_minor = excluded.amount_minor
        """,
        [value for row in rows for value in row],
    )


def set_stripe_status(con: duckdb.DuckDBPyConnection, invoice_id: str, status: str) -> None:
    con.execute(
        "UPDATE meterbook_stripe.invoices SET stripe_status = ? WHERE invoice_id = ?",
        [status, invoice_id],
    )


def key_generations(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Every key moved on after a refusal (a short table: refusals are rare)."""
    rows = con.execute(
        "SELECT base_key, generation FROM meterbook_stripe.idempotency_generations"
    ).fetchall()
    return dict(rows)


def bump_key_generation(
    con: duckdb.DuckDBPyConnection, base_key: str, error: str, now: datetime
) -> None:
    con.execute(
        """
        INSERT INTO meterbook_stripe.idempotency_generations VALUES (?, 1, ?, ?)
        ON CONFLICT (base_key) DO UPDATE SET
            generation = generation + 1,
            last_error = excluded.last_error,
            refused_at = excluded.refused_at
        """,
        [base_key, error, now],
    )


@dataclass
class IdempotencyKeys:
    """Our key for each create, and its generation (read once per run, bumped on refusals)."""

    con: duckdb.DuckDBPyConnection
    now: datetime
    generations: dict[str, int] = field(default_factory=dict)

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, now: datetime) -> IdempotencyKeys:
        return cls(con, now, key_generations(con))

    def send(self, send: Callable[[str], T], kind: str, *ids: str) -> T:
        """`send(key)` with our idempotency key for (kind, ids).

        After a 4xx refusal the key moves on a generation: Stripe created nothing, but would
        replay the refusal for 24 hours, even once the cause is fixed. Anything else keeps the
        key (`StripeApiError.refused`): there, something may exist.
        """
        base = idempotency_key(kind, *ids)
        key = idempotency_key(kind, *ids, generation=self.generations.get(base, 0))
        try:
            return send(key)
        except StripeApiError as exc:
            if exc.refused:
                bump_key_generation(self.con, base, str(exc), self.now)
                self.generations[base] = self.generations.get(base, 0) + 1
            raise


# -- credit notes and refunds -----------------------------------------------------------------


@dataclass(frozen=True)
class CreditNoteMapping:
    credit_note_id: str
    stripe_invoice_id: str
    stripe_credit_note_id: str
    stripe_refund_id: str | None
    total_minor: int


def credit_note_mapping(
    con: duckdb.DuckDBPyConnection, credit_note_id: str
) -> CreditNoteMapping | None:
    rows = con.execute(
        """
        SELECT credit_note_id, stripe_invoice_id, stripe_credit_note_id, stripe_refund_id,
               total_minor
        FROM meterbook_stripe.credit_notes WHERE credit_note_id = ?
        """,
        [credit_note_id],
    ).fetchall()
    return CreditNoteMapping(*rows[0]) if rows else None


def save_credit_note(
    con: duckdb.DuckDBPyConnection,
    ours: tuple[str, str, str],
    stripe_credit_note: dict,
    now: datetime,
) -> None:
    """`ours`: (credit_note_id, number, invoice_id); the rest is Stripe's word."""
    con.execute(
        """
        INSERT INTO meterbook_stripe.credit_notes VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (credit_note_id) DO UPDATE SET
            stripe_invoice_id = excluded.stripe_invoice_id,
            stripe_credit_note_id = excluded.stripe_credit_note_id,
            stripe_refund_id = excluded.stripe_refund_id,
            total_minor = excluded.total_minor
        """,
        [
            *ours,
            stripe_id(stripe_credit_note["invoice"]),
            stripe_credit_note["id"],
            stripe_id(stripe_credit_note.get("refund")),
            stripe_credit_note["total"],
            now,
        ],
    )


def refund_mapping(con: duckdb.DuckDBPyConnection, credit_note_id: str) -> str | None:
    rows = con.execute(
        "SELECT stripe_refund_id FROM meterbook_stripe.refunds WHERE credit_note_id = ?",
        [credit_note_id],
    ).fetchall()
    return rows[0][0] if rows else None


def save_refund(
    con: duckdb.DuckDBPyConnection, credit_note_id: str, refund: dict, now: datetime
) -> None:
    con.execute(
        """
        INSERT INTO meterbook_stripe.refunds VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (credit_note_id) DO UPDATE SET
            stripe_refund_id = excluded.stripe_refund_id,
            amount_minor = excluded.amount_minor,
            status = excluded.status
        """,
        [credit_note_id, refund["id"], refund["amount"], refund["status"], now],
    )


def stripe_id(reference: str | dict | None) -> str | None:
    """A reference to another Stripe object, expanded or not."""
    return reference.get("id") if isinstance(reference, dict) else reference
