"""Push our credit notes (SPEC 11) to Stripe, and their refunds, exactly once.

The ledger row is the decision (billing/credit_notes/issue.py wrote it); this is the outbox's
sending step (STYLE 12). For each credit note not yet recorded in
`meterbook_stripe.credit_notes`, in number order:

1. its invoice must be in Stripe (pushed by `sync_period`), or it fails and the others go on;
2. look up: our mapping table, then the Stripe invoice's credit notes, by our id in their
   metadata (a list: strongly consistent, so even a run that died a second ago is seen);
3. only then create, under a deterministic idempotency key, settled as the ledger decided:
   - `reduce_due`: no settlement, it lowers what the open invoice still owes. Paid meanwhile:
     that credit note fails (it must be issued again as a refund or a wallet credit; choosing
     for finance is not ours to do);
   - `refund`: a Stripe refund of the total on the invoice's payment first (looked up the same
     way by our id, then keyed), then the credit note linked to it;
   - `wallet`: the total is `out_of_band_amount`: the credit is held in our wallet, not in
     Stripe's customer balance;
4. reconcile: Stripe's total must be ours to the minor unit.

Each Stripe object is recorded right after Stripe answered, so a run killed anywhere leaves
at worst a missing row, which the next run's lookup finds again. A 4xx or an exhausted retry
fails that credit note; an unreachable Stripe (`StripeUnavailable`) stops the run.

How the Dagster job calls it (orchestration/defs/credit_notes/jobs.py):

    result = push_credit_notes(con, gateway, now=now_utc(), credit_note_ids=[credit_note_id])
    result.raise_for_failures()

`sync_period` pushes the credit notes of the month's invoices after the invoices, so
`meterbook sync-stripe --period M` catches up whatever a failed push left behind.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import duckdb

from integrations.stripe.client import StripeGateway
from integrations.stripe.errors import StripeApiError, SyncError, at_most_one
from integrations.stripe.mapping import (
    IdempotencyKeys,
    credit_note_mapping,
    invoice_mapping,
    refund_mapping,
    save_credit_note,
    save_refund,
    stripe_id,
)
from integrations.stripe.payloads import (
    META_CREDIT_NOTE,
    CreditLine,
    credit_note_lines,
    credit_note_metadata,
    credit_note_params,
    refund_params,
)
from orchestration.billing.money import to_minor_units
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.stripe import ensure_stripe_schema

log = logging.getLogger(__name__)

# Stripe invoice statuses a credit note that lowers what is owed can go on (Stripe: an
# uncollectible invoice still owes its amount_remaining).
OWING_IN_STRIPE = frozenset({"open", "uncollectible"})


@dataclass(frozen=True)
class LedgerCreditNoteLine:
    line_id: str
    description: str
    amount: Decimal  # pre-tax
    tax_amount: Decimal


@dataclass(frozen=True)
class LedgerCreditNote:
    credit_note_id: str
    number: str
    invoice_id: str
    invoice_number: str
    close_month: str | None  # its invoice's (None: the invoice is not in the ledger)
    currency: str
    reason: str
    settlement: str  # reduce_due | refund | wallet
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    lines: tuple[LedgerCreditNoteLine, ...]


@dataclass(frozen=True)
class CreditNotePlan:
    """What Stripe must hold for one of our credit notes."""

    note: LedgerCreditNote
    lines: tuple[CreditLine, ...]
    total_minor: int

    @property
    def metadata(self) -> dict[str, str]:
        note = self.note
        return credit_note_metadata(note.credit_note_id, note.number, note.invoice_id)


@dataclass(frozen=True)
class CreditNoteOutcome:
    credit_note_id: str
    number: str
    invoice_id: str | None
    action: str  # pushed | already_synced | failed
    stripe_credit_note_id: str | None = None
    stripe_refund_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class CreditNoteSyncResult:
    outcomes: tuple[CreditNoteOutcome, ...]
    requests_sent: int
    creates_sent: int

    @property
    def failures(self) -> tuple[CreditNoteOutcome, ...]:
        return tuple(o for o in self.outcomes if o.action == "failed")

    def counts(self) -> dict[str, int]:
        counts = Counter(o.action for o in self.outcomes)
        return {a: counts.get(a, 0) for a in ("pushed", "already_synced", "failed")}

    def errors(self) -> list[str]:
        return [f"{o.number}: {o.error}" for o in self.failures]

    def metadata(self) -> dict[str, object]:
        """Plain values for run metadata (no secrets: ids, counts and errors)."""
        return {
            "credit_notes": len(self.outcomes),
            **self.counts(),
            "stripe_requests": self.requests_sent,
            "stripe_creates": self.creates_sent,
            "errors": self.errors(),
        }

    def raise_for_failures(self) -> None:
        if self.failures:
            raise SyncError(
                f"{len(self.failures)} credit note(s) not pushed to Stripe:\n"
                + failure_lines(self.failures)
            )


def failure_lines(failures: Sequence[CreditNoteOutcome]) -> str:
    return "\n".join(f"  {o.number} ({o.credit_note_id}): {o.error}" for o in failures)


def push_credit_notes(
    con: duckdb.DuckDBPyConnection,
    client: StripeGateway,
    *,
    now: datetime,
    invoice_ids: Sequence[str] | None = None,
    credit_note_ids: Sequence[str] | None = None,
) -> CreditNoteSyncResult:
    """Push every ledger credit note not in Stripe yet, by number; either limited to the
    credit notes of `invoice_ids` or to `credit_note_ids` (an id the ledger lacks fails)."""
    if invoice_ids is not None and credit_note_ids is not None:
        raise ValueError("push_credit_notes takes invoice_ids or credit_note_ids, not both")
    ensure_ledger_schema(con)
    ensure_stripe_schema(con)
    requests_before, creates_before = client.requests_sent, client.creates_sent
    notes = load_credit_notes(con, invoice_ids=invoice_ids, credit_note_ids=credit_note_ids)
    push = _Push(con, client, now, IdempotencyKeys.load(con, now))
    outcomes = [push.one(note) for note in notes]
    found = {note.credit_note_id for note in notes}
    outcomes += [_not_in_ledger(i) for i in dict.fromkeys(credit_note_ids or ()) if i not in found]
    return CreditNoteSyncResult(
        tuple(outcomes),
        client.requests_sent - requests_before,
        client.creates_sent - creates_before,
    )


# -- our side: the ledger ---------------------------------------------------------------------

_NOTES_SQL = """
SELECT n.credit_note_id, n.number, n.invoice_id, n.invoice_number, i.close_month, n.currency,
       n.reason, n.settlement, n.subtotal, n.tax_total, n.total
FROM meterbook_ledger.credit_notes AS n
LEFT JOIN meterbook_ledger.invoices AS i USING (invoice_id)
WHERE ($invoice_ids IS NULL OR list_contains($invoice_ids, n.invoice_id))
  AND ($credit_note_ids IS NULL OR list_contains($credit_note_ids, n.credit_note_id))
ORDER BY n.number
"""

_LINES_SQL = """
SELECT credit_note_id, line_id, description, amount, tax_amount
FROM meterbook_ledger.credit_note_lines
WHERE list_contains(?, credit_note_id)
ORDER BY credit_note_id, position, line_id
"""


def load_credit_notes(
    con: duckdb.DuckDBPyConnection,
    *,
    invoice_ids: Sequence[str] | None = None,
    credit_note_ids: Sequence[str] | None = None,
) -> list[LedgerCreditNote]:
    """Ledger credit notes by number, with their lines in order (all of them, or those of
    `invoice_ids`, or `credit_note_ids`). Reads `meterbook_ledger` only."""
    limits = {
        "invoice_ids": None if invoice_ids is None else list(invoice_ids),
        "credit_note_ids": None if credit_note_ids is None else list(credit_note_ids),
    }
    rows = con.execute(_NOTES_SQL, limits).fetchall()
    if not rows:
        return []
    lines: dict[str, list[LedgerCreditNoteLine]] = {}
    for note_id, *fields in con.execute(_LINES_SQL, [[row[0] for row in rows]]).fetchall():
        lines.setdefault(note_id, []).append(LedgerCreditNoteLine(*fields))
    return [LedgerCreditNote(*row, lines=tuple(lines.get(row[0], ()))) for row in rows]


def plan_credit_note(note: LedgerCreditNote) -> CreditNotePlan:
    """The Stripe lines and total of `note`; refuses a credit note that does not add up."""
    _check_adds_up(note)
    try:
        pairs = [(line.description, line.amount) for line in note.lines]
        lines = credit_note_lines(pairs, note.tax_total, note.currency)
        total = to_minor_units(note.total, note.currency)
    except (ValueError, SyncError) as exc:  # an amount not in whole minor units
        raise SyncError(f"ledger credit note {note.number}: {exc}") from None
    if total <= 0:
        raise SyncError(f"ledger credit note {note.number} credits {note.total}: nothing to send")
    return CreditNotePlan(note, lines, total)


def _check_adds_up(note: LedgerCreditNote) -> None:
    lines = sum((line.amount for line in note.lines), Decimal(0))
    checks = (
        ("the sum of its lines", lines, note.subtotal),
        ("subtotal + tax", note.subtotal + note.tax_total, note.total),
    )
    for what, computed, stored in checks:
        if computed != stored:
            raise SyncError(
                f"ledger credit note {note.number} does not add up: {what} is {computed}, "
                f"the ledger says {stored}; nothing was sent to Stripe for it"
            )


# -- Stripe's side ------------------------------------------------------------------------------


@dataclass
class _Push:
    con: duckdb.DuckDBPyConnection
    client: StripeGateway
    now: datetime
    keys: IdempotencyKeys

    def one(self, note: LedgerCreditNote) -> CreditNoteOutcome:
        try:
            outcome = self._push(note)
            log.info("Stripe push of credit note %s: %s", note.number, outcome.action)
            return outcome
        except (StripeApiError, SyncError) as exc:
            log.error("Stripe push of credit note %s failed: %s", note.number, exc)
            return CreditNoteOutcome(
                note.credit_note_id, note.number, note.invoice_id, "failed", error=str(exc)
            )

    def _push(self, note: LedgerCreditNote) -> CreditNoteOutcome:
        mapped = credit_note_mapping(self.con, note.credit_note_id)
        if mapped:
            return _outcome(
                note, "already_synced", mapped.stripe_credit_note_id, mapped.stripe_refund_id
            )
        stripe_invoice_id = self._stripe_invoice_id(note)
        plan = plan_credit_note(note)
        credit_note = self._find(plan, stripe_invoice_id)
        if credit_note is None:
            credit_note = self._create(plan, self.client.retrieve_invoice(stripe_invoice_id))
        elif note.settlement == "refund":
            self._record_found_refund(plan, credit_note)
        _reconcile(plan, credit_note, stripe_invoice_id)
        ours = (note.credit_note_id, note.number, note.invoice_id)
        save_credit_note(self.con, ours, credit_note, self.now)
        return _outcome(note, "pushed", credit_note["id"], stripe_id(credit_note.get("refund")))

    def _stripe_invoice_id(self, note: LedgerCreditNote) -> str:
        if note.close_month is None:
            raise SyncError(f"its invoice {note.invoice_number} is not in the ledger")
        mapping = invoice_mapping(self.con, note.invoice_id)
        if mapping is None or mapping.pushed_at is None:
            raise SyncError(
                f"invoice {note.invoice_number} is not in Stripe yet: run "
                f"`meterbook sync-stripe --period {note.close_month}` (it pushes this credit "
                "note after the invoice)"
            )
        if mapping.voided_at is not None:
            raise SyncError(
                f"invoice {note.invoice_number} is void in Stripe "
                f"({mapping.stripe_invoice_id}): a void invoice takes no credit note"
            )
        return mapping.stripe_invoice_id

    def _find(self, plan: CreditNotePlan, stripe_invoice_id: str) -> dict | None:
        our_id = plan.note.credit_note_id
        found = [
            cn
            for cn in self.client.list_credit_notes(stripe_invoice_id)
            if (cn.get("metadata") or {}).get(META_CREDIT_NOTE) == our_id
        ]
        at_most_one(found, f"credit notes for {plan.note.number}")
        return found[0] if found else None

    def _create(self, plan: CreditNotePlan, stripe_invoice: dict) -> dict:
        _check_creditable(plan, stripe_invoice)
        params = credit_note_params(
            stripe_invoice["id"],
            plan.lines,
            memo=plan.note.reason,
            metadata=plan.metadata,
            settlement=self._settlement(plan, stripe_invoice),
        )
        created, _ = self.keys.send(
            lambda key: self.client.create_credit_note(params, key),
            "credit_note",
            plan.note.credit_note_id,
        )
        return created

    def _settlement(self, plan: CreditNotePlan, stripe_invoice: dict) -> dict[str, str | int]:
        if plan.note.settlement == "refund":
            return {"refund": self._refund(plan, stripe_invoice)}
        if plan.note.settlement == "wallet":
            return {"out_of_band_amount": plan.total_minor}
        return {}

    # -- refunds -----------------------------------------------------------------------------

    def _refund(self, plan: CreditNotePlan, stripe_invoice: dict) -> str:
        """The id of the refund of `plan`'s credit note: recorded, found, or made now."""
        recorded = refund_mapping(self.con, plan.note.credit_note_id)
        if recorded:
            return recorded
        payment = _payment(plan, stripe_invoice)
        refund = self._find_refund(plan, payment)
        if refund is None:
            params = refund_params(payment, plan.total_minor, plan.metadata)
            refund, _ = self.keys.send(
                lambda key: self.client.create_refund(params, key),
                "refund",
                plan.note.credit_note_id,
            )
        _check_refund(plan, refund)
        save_refund(self.con, plan.note.credit_note_id, refund, self.now)
        return refund["id"]

    def _find_refund(self, plan: CreditNotePlan, payment: dict[str, str]) -> dict | None:
        our_id = plan.note.credit_note_id
        found = [
            refund
            for refund in self.client.list_refunds(**payment)
            if (refund.get("metadata") or {}).get(META_CREDIT_NOTE) == our_id
        ]
        at_most_one(found, f"refunds for {plan.note.number}")
        return found[0] if found else None

    def _record_found_refund(self, plan: CreditNotePlan, credit_note: dict) -> None:
        """A credit note found in Stripe but not in our tables (a lost warehouse): its refund
        is recorded again too, from the payment's refunds."""
        refund_id = stripe_id(credit_note.get("refund"))
        if refund_mapping(self.con, plan.note.credit_note_id) or not refund_id:
            return
        payment = _payment(plan, self.client.retrieve_invoice(stripe_id(credit_note["invoice"])))
        refund = self._find_refund(plan, payment)
        if refund is not None and refund["id"] == refund_id:
            save_refund(self.con, plan.note.credit_note_id, refund, self.now)


def _check_creditable(plan: CreditNotePlan, stripe_invoice: dict) -> None:
    """Refuse, before sending, what Stripe would refuse or do differently than the ledger says."""
    note, status = plan.note, stripe_invoice["status"]
    where = f"credit note {note.number} of {note.invoice_number} (Stripe {stripe_invoice['id']})"
    if note.settlement == "reduce_due" and status not in OWING_IN_STRIPE:
        raise SyncError(
            f"{where} lowers what the invoice owes, but it is {status} in Stripe; nothing was "
            "sent: issue it again as a refund or a wallet credit"
        )
    if note.settlement != "reduce_due" and status != "paid":
        raise SyncError(
            f"{where} settles a paid invoice ({note.settlement}), but it is {status} in Stripe; "
            "nothing was sent"
        )
    left = stripe_invoice["total"] - _credited(stripe_invoice)
    if note.settlement == "reduce_due":
        left = min(left, stripe_invoice["amount_remaining"])
    if plan.total_minor > left:
        raise SyncError(
            f"{where} credits {plan.total_minor} minor units, Stripe has {left} left to credit "
            "(what prepaid credits paid is not in Stripe's invoice); nothing was sent"
        )


def _credited(stripe_invoice: dict) -> int:
    return (stripe_invoice.get("pre_payment_credit_notes_amount") or 0) + (
        stripe_invoice.get("post_payment_credit_notes_amount") or 0
    )


def _payment(plan: CreditNotePlan, stripe_invoice: dict) -> dict[str, str]:
    """What Stripe refunds: the invoice's payment intent, or its charge when it has none."""
    for field_name in ("payment_intent", "charge"):
        value = stripe_id(stripe_invoice.get(field_name))
        if value:
            return {field_name: value}
    raise SyncError(
        f"credit note {plan.note.number} refunds {plan.note.invoice_number}, but Stripe invoice "
        f"{stripe_invoice['id']} was not paid through Stripe (no payment to refund)"
    )


def _check_refund(plan: CreditNotePlan, refund: dict) -> None:
    if refund["amount"] != plan.total_minor or refund["currency"] != plan.note.currency.lower():
        raise SyncError(
            f"Stripe refund {refund['id']} of {plan.note.number} is {refund['amount']} "
            f"{refund['currency']}, the ledger says {plan.total_minor} "
            f"{plan.note.currency.lower()} (minor units)"
        )


def _reconcile(plan: CreditNotePlan, credit_note: dict, stripe_invoice_id: str) -> None:
    currency = plan.note.currency.lower()
    if (credit_note["total"], credit_note["currency"]) != (plan.total_minor, currency):
        raise SyncError(
            f"Stripe credit note {credit_note['id']} of {plan.note.number} totals "
            f"{credit_note['total']} {credit_note['currency']}, the ledger says "
            f"{plan.total_minor} {currency} (minor units)"
        )
    if stripe_id(credit_note["invoice"]) != stripe_invoice_id:
        raise SyncError(
            f"Stripe credit note {credit_note['id']} of {plan.note.number} credits invoice "
            f"{stripe_id(credit_note['invoice'])}, not {stripe_invoice_id}"
        )
    if plan.note.settlement == "refund" and not credit_note.get("refund"):
        raise SyncError(
            f"Stripe credit note {credit_note['id']} of {plan.note.number} refunds nothing; "
            "the ledger says it is refunded"
        )


def _outcome(
    note: LedgerCreditNote, action: str, credit_note_id: str | None, refund_id: str | None
) -> CreditNoteOutcome:
    return CreditNoteOutcome(
        note.credit_note_id, note.number, note.invoice_id, action, credit_note_id, refund_id
    )


def _not_in_ledger(credit_note_id: str) -> CreditNoteOutcome:
    return CreditNoteOutcome(
        credit_note_id,
        credit_note_id,
        None,
        "failed",
        error=f"credit note {credit_note_id} is not in the ledger: nothing to push",
    )
