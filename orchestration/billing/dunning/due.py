"""Which dunning step is due for which invoice (SPEC 11): pure functions of the receivables, the
catalog's `settings.dunning` and what the outbox already decided.

Rules, in the order they apply to one invoice:

1. **Still owed?** An invoice voided (in the ledger or in Stripe), paid, credited in full, not
   open in Stripe (a draft, or `uncollectible`: finance wrote it off there) or owing less than
   `min_amount` gets no new step, and its steps not yet sent are cancelled. What it owes is
   the ledger's `amount_due` less what Stripe says was paid less the credit notes that lowered
   what it owes (settlement `reduce_due`), never below 0.
2. **Status fresh?** A status pulled from Stripe longer ago than `max_status_age` may be out of
   date (the invoice may have been paid since): the invoice is held, nothing is decided or
   sent for it, until a pull refreshes it. Its steps are not cancelled either.
3. **Overdue since when?** A `send_invoice` invoice from its Stripe `due_date`; an automatic
   charge from the day a pull first saw a failed attempt (`first_failed_at`): until a charge
   fails the customer has nothing to do. Days are counted between UTC dates: day 1 is the
   day after.
4. **Which step?** Steps are `reminder_<d>` for each of `reminder_days` and `final_notice` on
   `final_notice_days`. Steps after the last one already decided for the invoice whose day
   has come are due. When several are due at once (the schedule was off for a week, or
   dunning was just turned on), only the latest is sent and the earlier ones are recorded as
   `skipped`: a customer gets one message, the one that fits how late the invoice is, not a
   burst of stale reminders. A step is never decided twice (the outbox's key), and a step
   earlier than one already decided never comes back (a catalog adding `reminder_3` does not
   reach back behind a `reminder_7` already sent).
5. **Whom to?** The paying customer's `email` in the catalog. Without one the invoice is held
   (listed, nothing recorded) until an address is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from orchestration.catalog.models import Dunning

__all__ = [
    "MAX_STATUS_AGE",
    "DunningPlan",
    "Held",
    "InvoiceSteps",
    "ReceivableState",
    "Step",
    "closed_reason",
    "dunning_steps",
    "plan_dunning",
    "steps_due",
]

# The dunning job pulls payment status right before it decides; a daily schedule leaves a
# pull at most a day old, and a few hours more absorb a slow or late run.
MAX_STATUS_AGE = timedelta(hours=36)
ZERO = Decimal(0)


@dataclass(frozen=True)
class Step:
    name: str  # reminder_<day> | final_notice
    day: int  # days after the due date
    final: bool = False


def dunning_steps(settings: Dunning) -> tuple[Step, ...]:
    """The catalog's steps by day (validation keeps reminder_days increasing and the final
    notice after them)."""
    steps = [Step(f"reminder_{day}", day) for day in settings.reminder_days]
    if settings.final_notice_days is not None:
        steps.append(Step("final_notice", settings.final_notice_days, final=True))
    return tuple(steps)


@dataclass(frozen=True)
class ReceivableState:
    """One invoice sent to Stripe, as the ledger, the last pull and the credit notes see it."""

    invoice_id: str
    number: str
    customer_id: str
    currency: str
    stripe_status: str  # Stripe's: draft | open | paid | uncollectible | void
    ledger_status: str  # finalized | void
    collection_method: str | None  # charge_automatically | send_invoice
    total: Decimal  # the invoice's total (ledger)
    ledger_amount_due: Decimal  # total less paid credits (ledger)
    amount_paid: Decimal  # Stripe
    reduced_due: Decimal = ZERO  # credit notes that lowered what it owes
    refunded: Decimal = ZERO  # credit notes refunded through Stripe
    to_wallet: Decimal = ZERO  # credit notes turned into wallet credit
    credited_total: Decimal = ZERO  # every credit note, whatever its settlement
    due_date: datetime | None = None  # Stripe's (send_invoice)
    first_failed_at: datetime | None = None  # when a pull first saw a failed automatic charge
    pulled_at: datetime | None = None
    hosted_invoice_url: str | None = None
    period_start: date | None = None
    period_end: date | None = None

    @property
    def amount_due(self) -> Decimal:
        """What the customer still owes (SPEC 11), never below 0. Refunds and wallet credits
        settle paid money, so they change nothing here."""
        return max(ZERO, self.ledger_amount_due - self.amount_paid - self.reduced_due)

    @property
    def overdue_from(self) -> date | None:
        """The UTC day the days overdue count from (rule 3), None when not known yet."""
        if self.collection_method == "send_invoice":
            moment = self.due_date
        elif self.collection_method == "charge_automatically":
            moment = self.first_failed_at
        else:  # unknown to Stripe's API today: whichever it gave
            moment = self.due_date or self.first_failed_at
        return None if moment is None else moment.astimezone(UTC).date()

    def days_overdue(self, today: date) -> int:
        """Whole days past `overdue_from` (0 while not overdue or not known)."""
        start = self.overdue_from
        return max(0, (today - start).days) if start is not None else 0


def closed_reason(state: ReceivableState, min_amount: Decimal) -> str | None:
    """Why the invoice gets no more reminders (rule 1), or None while it is owed."""
    if state.ledger_status == "void" or state.stripe_status == "void":
        return "void"
    if state.stripe_status == "paid":
        return "paid"
    if state.amount_due == 0:
        return "credited in full" if state.reduced_due > 0 else "paid"
    if state.stripe_status != "open":
        return f"{state.stripe_status} in Stripe"
    if state.amount_due < min_amount:
        return f"owes less than min_amount ({min_amount})"
    return None


def steps_due(
    steps: Sequence[Step], days_overdue: int, decided: Mapping[str, int]
) -> tuple[Step | None, tuple[Step, ...]]:
    """(the step to send, the earlier ones to skip) for an invoice `days_overdue` late whose
    decided steps are `decided` (name -> day). Rule 4."""
    after = max(decided.values(), default=0)
    due = [s for s in steps if after < s.day <= days_overdue and s.name not in decided]
    if not due:
        return None, ()
    return due[-1], tuple(due[:-1])


@dataclass(frozen=True)
class InvoiceSteps:
    """What a run decides for one invoice: a step to send and the earlier ones it skips."""

    state: ReceivableState
    days_overdue: int
    send: Step
    skip: tuple[Step, ...]
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class Held:
    state: ReceivableState
    reason: str  # stale status | no email
    days_overdue: int


@dataclass(frozen=True)
class DunningPlan:
    due: tuple[InvoiceSteps, ...]
    cancel: tuple[tuple[str, str], ...]  # (invoice_id, reason): its unsent steps are cancelled
    held: tuple[Held, ...]
    sendable: frozenset[str]  # invoices owed, fresh and addressed: their pending rows may go


def plan_dunning(
    states: Sequence[ReceivableState],
    settings: Dunning,
    decided: Mapping[str, Mapping[str, int]],
    recipients: Mapping[str, Sequence[str]],
    now: datetime,
    max_status_age: timedelta = MAX_STATUS_AGE,
) -> DunningPlan:
    """The run's decisions over every receivable (module docstring). `decided` maps an invoice
    to its steps already in the outbox (name -> day); `recipients` a customer to its
    addresses (none: held)."""
    steps = dunning_steps(settings)
    today = now.astimezone(UTC).date()
    due, cancel, held, sendable = [], [], [], set()
    for state in states:
        reason = closed_reason(state, settings.min_amount)
        if reason is not None:
            cancel.append((state.invoice_id, reason))
            continue
        days = state.days_overdue(today)
        send, skip = steps_due(steps, days, decided.get(state.invoice_id, {}))
        addresses = tuple(recipients.get(state.customer_id, ()))
        problem = _why_held(state, addresses, now, max_status_age)
        if problem is not None:
            if send is not None:  # listed only when it keeps a reminder back
                held.append(Held(state, problem, days))
            continue
        sendable.add(state.invoice_id)
        if send is not None:
            due.append(InvoiceSteps(state, days, send, skip, addresses))
    return DunningPlan(tuple(due), tuple(cancel), tuple(held), frozenset(sendable))


def _why_held(
    state: ReceivableState, addresses: tuple[str, ...], now: datetime, max_age: timedelta
) -> str | None:
    """Rules 2 and 5: nothing is decided or sent for the invoice while this holds."""
    if state.pulled_at is None or now - state.pulled_at > max_age:
        return "payment status out of date: pull it from Stripe"
    if not addresses:
        return f"customer {state.customer_id} has no email"
    return None
