"""A dunning run (SPEC 11): decide what is due and record it in the outbox, then send what the
outbox holds for invoices still owed, recording each outcome as it happens.

The two steps are separate on purpose (STYLE 12). Deciding renders every message and records
it with its step in one transaction (or nothing, should a template fail). Sending reads only
the outbox and goes through a `Transport`: the billing domain knows nothing of SMTP, and the
SMTP transport (`integrations/mail/smtp.py`) knows nothing of invoices. Without a transport
(no `settings.smtp`, or its password not set) the run records and reports, and sends nothing;
the next run with a transport sends what waits, unless the invoice was paid meanwhile.

Only rows of invoices this run saw owed, with a fresh status and an address, are sent: a row
decided yesterday for an invoice paid since is cancelled by this run's decisions, and one
whose status could not be refreshed waits.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

from orchestration.billing.dunning.due import (
    MAX_STATUS_AGE,
    DunningPlan,
    Held,
    InvoiceSteps,
    ReceivableState,
    Step,
    plan_dunning,
)
from orchestration.billing.dunning.outbox import DunningOutbox, DunningRow, NewRow
from orchestration.billing.dunning.render import (
    Rendered,
    build_message,
    message_id_for,
    reminder_context,
    render_reminder,
    template_environment,
)
from orchestration.billing.money import format_money
from orchestration.catalog.models import Catalog, Dunning, mail_recipients

__all__ = [
    "DunningPreview",
    "DunningReport",
    "SendOutcome",
    "SendResult",
    "Transport",
    "preview_dunning",
    "recipients_by_customer",
    "run_dunning",
    "send_open_rows",
]

logger = logging.getLogger(__name__)

PREVIEWS = 10  # messages shown in a report's metadata
_PREVIEW_CHARS = 1_500


# --- what a transport is ------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    """What one message's sending did.

    - sent: the server accepted it (`note`: recipients it refused, if some were);
    - retry: not sent (a temporary refusal or a dropped connection): pending for the next run;
    - failed: refused for good (5xx): never sent again by itself;
    - stop: not sent, and the server cannot be used now (unreachable, login refused): this one
      and the rest wait for the next run.
    """

    verdict: Literal["sent", "retry", "failed", "stop"]
    error: str | None = None
    note: str | None = None


class Transport(Protocol):
    """Sends a message's exact bytes. Entered once per run (one connection for the batch)."""

    description: str  # where mail goes, safe to show: no password

    def __enter__(self) -> Transport: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def send(self, sender: str, recipients: Sequence[str], message: bytes) -> SendResult: ...


# --- reports ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SendOutcome:
    invoice_id: str
    number: str
    step: str
    status: str  # sent | failed | pending
    recipients: tuple[str, ...]
    error: str | None = None
    resent: bool = False  # its previous sending was interrupted: the server may have it twice


@dataclass(frozen=True)
class Preview:
    invoice_id: str
    number: str
    customer_id: str
    step: str
    days_overdue: int
    amount_due: str
    recipients: tuple[str, ...]
    subject: str
    text: str


@dataclass(frozen=True)
class DunningReport:
    delivery: str  # where mail went, or why it was not sent
    decided: tuple[NewRow, ...] = ()  # new messages this run (pending when recorded)
    skipped: tuple[NewRow, ...] = ()
    cancelled: tuple[DunningRow, ...] = ()
    held: tuple[Held, ...] = ()
    outcomes: tuple[SendOutcome, ...] = ()
    previews: tuple[Preview, ...] = ()
    pending: int = 0  # in the outbox after the run, waiting to be sent
    off: bool = False  # no settings.dunning

    def _count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def sent(self) -> int:
        return self._count("sent")

    @property
    def failed(self) -> int:
        return self._count("failed")

    def metadata(self) -> dict[str, object]:
        """JSON-ready, for the Dagster materialization and `meterbook dunning --json`."""
        return {
            "due": len(self.decided),
            "sent": self.sent,
            "skipped": len(self.skipped),
            "cancelled": len(self.cancelled),
            "failed": self.failed,
            "pending": self.pending,
            "held": len(self.held),
            "delivery": self.delivery,
            "outcomes": [asdict(outcome) for outcome in self.outcomes],
            "cancelled_steps": [
                {"number": r.number, "step": r.step, "reason": r.close_reason}
                for r in self.cancelled
            ],
            "held_invoices": [_held_entry(h) for h in self.held],
            "previews": [asdict(preview) for preview in self.previews],
        }


def _held_entry(held: Held) -> dict[str, object]:
    return {
        "number": held.state.number,
        "customer_id": held.state.customer_id,
        "days_overdue": held.days_overdue,
        "reason": held.reason,
    }


# --- deciding ---------------------------------------------------------------------------------


def recipients_by_customer(catalog: Catalog) -> dict[str, list[str]]:
    """Each paying customer's addresses (an invoice is the paying customer's)."""
    return {
        c.id: mail_recipients(c.email) for c in catalog.customers if c.parent_id is None and c.email
    }


@dataclass
class _Decisions:
    """What `decide` made, kept for the report (the outbox returns only what it recorded)."""

    plan: DunningPlan | None = None
    rendered: dict[tuple[str, str], Rendered] = field(default_factory=dict)


def _new_rows(
    plan: DunningPlan,
    settings: Dunning,
    catalog: Catalog,
    catalog_dir: Path | None,
    now: datetime,
    kept: _Decisions,
) -> list[NewRow]:
    env = template_environment(catalog_dir)
    rows = []
    for item in plan.due:
        context = reminder_context(item.state, item.send, item.days_overdue, catalog)
        rendered = render_reminder(env, context)
        kept.rendered[(item.state.invoice_id, item.send.name)] = rendered
        message_id = message_id_for(item.state.invoice_id, item.send.name, settings.from_address)
        message = build_message(
            rendered,
            settings=settings,
            recipients=item.recipients,
            message_id=message_id,
            invoice_id=item.state.invoice_id,
            step=item.send.name,
            date=now,
        )
        rows.append(_row(item, item.send, settings, message_id, rendered.subject, message))
        for step in item.skip:
            skipped_id = message_id_for(item.state.invoice_id, step.name, settings.from_address)
            reason = f"{item.send.name} was due too and sent instead"
            rows.append(_row(item, step, settings, skipped_id, "", None, reason))
    return rows


def _row(
    item: InvoiceSteps,
    step: Step,
    settings: Dunning,
    message_id: str,
    subject: str,
    message: bytes | None,
    skipped_because: str | None = None,
) -> NewRow:
    state = item.state
    return NewRow(
        invoice_id=state.invoice_id,
        step=step.name,
        step_day=step.day,
        number=state.number,
        customer_id=state.customer_id,
        currency=state.currency,
        amount_due=format_money(state.amount_due, state.currency),
        days_overdue=item.days_overdue,
        recipients=item.recipients if message is not None else (),
        message_id=message_id,
        sender=parseaddr(settings.from_address)[1],
        subject=subject,
        message=message,
        status="pending" if message is not None else "skipped",
        close_reason=skipped_because,
    )


# --- sending ----------------------------------------------------------------------------------


def send_open_rows(
    outbox: DunningOutbox,
    transport: Transport,
    invoice_ids: Collection[str] | None = None,
    log: logging.Logger = logger,
) -> list[SendOutcome]:
    """Send the outbox's open rows (of `invoice_ids` when given), one at a time, each marked
    `sending` before and recorded after (outbox module docstring)."""
    with outbox.sender():
        rows = outbox.open_rows(invoice_ids)
        if not rows:
            return []
        outcomes: list[SendOutcome] = []
        with transport:
            for index, row in enumerate(rows):
                outcome, stop = _send_row(outbox, transport, row, log)
                if outcome is not None:
                    outcomes.append(outcome)
                if stop:
                    outcomes.extend(_not_attempted(rows[index + 1 :], transport, log))
                    break
        return outcomes


def _send_row(
    outbox: DunningOutbox, transport: Transport, row: DunningRow, log: logging.Logger
) -> tuple[SendOutcome | None, bool]:
    """One message; returns its outcome (None: cancelled meanwhile) and whether to stop."""
    resent = row.status == "sending"
    if resent:
        log.warning(
            "dunning: sending %s of invoice %s again (%s): the process sending it before was "
            "stopped mid-send, so the recipient may get it twice",
            row.step,
            row.number,
            row.message_id,
        )
    if not outbox.mark_sending(row.invoice_id, row.step):
        return None, False
    result = transport.send(row.sender, row.recipients, row.message or b"")
    status = _record(outbox, row, result)
    _log_outcome(log, transport, row, result)
    error = result.error if result.verdict != "sent" else result.note
    outcome = SendOutcome(
        row.invoice_id, row.number, row.step, status, row.recipients, error, resent
    )
    return outcome, result.verdict == "stop"


def _record(outbox: DunningOutbox, row: DunningRow, result: SendResult) -> str:
    if result.verdict == "sent":
        outbox.mark_sent(row.invoice_id, row.step, result.note)
        return "sent"
    if result.verdict == "failed":
        outbox.mark_failed(row.invoice_id, row.step, result.error or "refused")
        return "failed"
    outbox.mark_retry(row.invoice_id, row.step, result.error or "not sent")
    return "pending"


def _log_outcome(
    log: logging.Logger, transport: Transport, row: DunningRow, result: SendResult
) -> None:
    where = transport.description
    if result.verdict == "sent":
        log.info(
            "dunning: sent %s of invoice %s to %s via %s%s",
            row.step,
            row.number,
            ", ".join(row.recipients),
            where,
            f" ({result.note})" if result.note else "",
        )
    elif result.verdict == "failed":
        log.warning(
            "dunning: %s of invoice %s refused by %s, not retried: %s",
            row.step,
            row.number,
            where,
            result.error,
        )
    else:
        log.warning(
            "dunning: %s of invoice %s not sent via %s, left pending: %s",
            row.step,
            row.number,
            where,
            result.error,
        )


def _not_attempted(
    rows: Sequence[DunningRow], transport: Transport, log: logging.Logger
) -> list[SendOutcome]:
    if rows:
        log.warning(
            "dunning: %d more message(s) left pending: %s cannot be used now",
            len(rows),
            transport.description,
        )
    why = "not attempted: the mail server could not be used"
    return [SendOutcome(r.invoice_id, r.number, r.step, "pending", r.recipients, why) for r in rows]


# --- the run ----------------------------------------------------------------------------------


def run_dunning(
    states: Sequence[ReceivableState],
    catalog: Catalog,
    outbox: DunningOutbox,
    now: datetime,
    transport: Transport | None,
    *,
    catalog_dir: Path | None = None,
    not_sent_because: str = "no settings.smtp: recorded only",
    max_status_age: timedelta = MAX_STATUS_AGE,
    log: logging.Logger = logger,
) -> DunningReport:
    """Decide and record (one transaction), then send through `transport` (None: record
    only, the report's `delivery` says `not_sent_because`). `catalog_dir` holds the catalog's
    template overrides (templates/dunning/)."""
    settings = catalog.settings.dunning
    if settings is None:
        return DunningReport(delivery="no settings.dunning: dunning is off", off=True)
    recipients = recipients_by_customer(catalog)
    kept = _Decisions()

    def decide(decided):
        plan = plan_dunning(states, settings, decided, recipients, now, max_status_age)
        kept.plan = plan
        return _new_rows(plan, settings, catalog, catalog_dir, now, kept), plan.cancel

    recorded, cancelled = outbox.decide(decide)
    plan = kept.plan
    for held in plan.held:
        log.warning("dunning: invoice %s held: %s", held.state.number, held.reason)
    outcomes: list[SendOutcome] = []
    if transport is not None:
        outcomes = send_open_rows(outbox, transport, plan.sendable, log)
    return DunningReport(
        delivery=transport.description if transport is not None else not_sent_because,
        decided=tuple(r for r in recorded if r.status == "pending"),
        skipped=tuple(r for r in recorded if r.status == "skipped"),
        cancelled=tuple(cancelled),
        held=plan.held,
        outcomes=tuple(outcomes),
        previews=_previews(recorded, kept),
        pending=outbox.counts()["pending"],
    )


def _previews(recorded: Sequence[NewRow], kept: _Decisions) -> tuple[Preview, ...]:
    previews = []
    for row in recorded:
        rendered = kept.rendered.get((row.invoice_id, row.step))
        if row.status != "pending" or rendered is None:
            continue
        previews.append(
            Preview(
                invoice_id=row.invoice_id,
                number=row.number,
                customer_id=row.customer_id,
                step=row.step,
                days_overdue=row.days_overdue,
                amount_due=f"{row.currency} {row.amount_due}",
                recipients=row.recipients,
                subject=row.subject,
                text=rendered.text[:_PREVIEW_CHARS],
            )
        )
        if len(previews) == PREVIEWS:
            break
    return tuple(previews)


# --- what is due, without recording anything ------------------------------------------------


@dataclass(frozen=True)
class DunningPreview:
    """`meterbook dunning` without --send: what a run would decide now, and what waits."""

    due: tuple[InvoiceSteps, ...]
    waiting: tuple[DunningRow, ...]  # decided by an earlier run, not sent yet
    held: tuple[Held, ...]
    off: bool = False

    def document(self) -> dict[str, object]:
        return {
            "due": [_due_entry(item) for item in self.due],
            "waiting": [
                {
                    "invoice_id": r.invoice_id,
                    "number": r.number,
                    "customer_id": r.customer_id,
                    "step": r.step,
                    "status": r.status,
                    "decided_at": r.decided_at,
                    "attempts": r.attempts,
                    "last_error": r.last_error,
                    "recipients": list(r.recipients),
                }
                for r in self.waiting
            ],
            "held": [_held_entry(h) for h in self.held],
        }


def _due_entry(item: InvoiceSteps) -> dict[str, object]:
    state = item.state
    return {
        "invoice_id": state.invoice_id,
        "number": state.number,
        "customer_id": state.customer_id,
        "step": item.send.name,
        "skips": [step.name for step in item.skip],
        "days_overdue": item.days_overdue,
        "currency": state.currency,
        "amount_due": format_money(state.amount_due, state.currency),
        "recipients": list(item.recipients),
        "payment_url": state.hosted_invoice_url,
    }


def preview_dunning(
    states: Sequence[ReceivableState],
    catalog: Catalog,
    outbox: DunningOutbox,
    now: datetime,
    max_status_age: timedelta = MAX_STATUS_AGE,
) -> DunningPreview:
    settings = catalog.settings.dunning
    if settings is None:
        return DunningPreview((), (), (), off=True)
    recipients = recipients_by_customer(catalog)
    plan = plan_dunning(states, settings, outbox.decided(), recipients, now, max_status_age)
    waiting = outbox.open_rows(plan.sendable)
    return DunningPreview(plan.due, tuple(waiting), plan.held)
