"""Issue date, due date and payment terms of a document, as Stripe sees them (pure).

The terms are the customer's `collection_method` and `days_until_due` (SPEC 3), read the way
`integrations/stripe/payloads.py` sends them, so the document and the Stripe invoice agree:
- `send_invoice`: due `days_until_due` days after the issue date, DEFAULT_DAYS_UNTIL_DUE
  when the catalog gives none (Stripe requires a due date for invoices it emails);
- `charge_automatically`: charged to the payment method on file when issued, so due on the
  issue date (Stripe ignores days_until_due for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from orchestration.catalog.models import Customer

# The same 30 as integrations.stripe.payloads.DEFAULT_DAYS_UNTIL_DUE (a test holds them equal:
# the billing layer may not import the integrations above it).
DEFAULT_DAYS_UNTIL_DUE = 30


@dataclass(frozen=True)
class Terms:
    issue_date: date | None  # None: a draft, not issued
    due_date: date | None
    words: str
    void_date: date | None = None


def document_terms(
    customer: Customer | None, finalized_at: datetime | None, voided_at: datetime | None = None
) -> Terms:
    """The dates in the customer's time zone (the day they read on their own calendar)."""
    zone = ZoneInfo(customer.timezone if customer else "UTC")
    issued = _local_day(finalized_at, zone)
    method = customer.collection_method if customer else "charge_automatically"
    if method == "send_invoice":
        days = customer.days_until_due if customer else None
        days = DEFAULT_DAYS_UNTIL_DUE if days is None else days
        words = "Due on receipt" if days == 0 else f"Payment due {days} days after the issue date"
    else:
        days = 0
        words = "Charged automatically to the payment method on file when issued"
    due = issued + timedelta(days=days) if issued else None
    return Terms(issued, due, words, _local_day(voided_at, zone))


def _local_day(moment: datetime | None, zone: ZoneInfo) -> date | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # the ledger stores UTC instants
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).date()
