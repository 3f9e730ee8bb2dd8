"""Pull payment status back from Stripe into `meterbook_stripe.accounts_receivable`.

Every invoice in the mapping is read from Stripe (one GET each) unless its last pulled status
is final (`paid` or `void` never change again). Amounts come back from minor units to
DECIMAL(38, 12) with the currency's exponent.

How the Dagster assets call this (a schedule in the UI, not partitioned):

    with meterbook.warehouse() as con:
        result = pull_payment_status(con, stripe_resource.gateway(), now_utc())
        overdue = overdue_invoices(con, now_utc())
    context.add_output_metadata({**result.metadata(), "overdue": len(overdue)})
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import duckdb

from integrations.stripe.client import StripeGateway
from integrations.stripe.errors import StripeApiError
from integrations.stripe.mapping import set_stripe_status
from integrations.stripe.payloads import from_minor_units
from orchestration.billing.money import minor_exponent
from orchestration.warehouse.stripe import ensure_stripe_schema

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Receivable:
    """One row of accounts_receivable: what Stripe says about one of our invoices."""

    invoice_id: str
    number: str
    close_month: str
    customer_id: str
    stripe_invoice_id: str
    currency: str
    currency_exponent: int
    status: str
    collection_method: str | None
    total: Decimal
    amount_due: Decimal
    amount_paid: Decimal
    amount_remaining: Decimal
    attempt_count: int
    next_payment_attempt: datetime | None
    due_date: datetime | None
    due_at: datetime | None
    finalized_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    hosted_invoice_url: str | None = None  # Stripe's payment page (finalized invoices)

    @property
    def payment_failed(self) -> bool:
        """An automatic charge failed at least once and the invoice is still owed. Stripe counts
        attempts (a successful one too), but dates none of them: the pull that first sees this
        records its own time (accounts_receivable.first_failed_at), from which dunning counts."""
        return self.status in ("open", "uncollectible") and self.attempt_count > 0


@dataclass(frozen=True)
class PullResult:
    pulled: tuple[Receivable, ...]
    failures: tuple[tuple[str, str], ...]  # (invoice number, error)
    requests_sent: int

    def metadata(self) -> dict[str, object]:
        statuses = Counter(r.status for r in self.pulled)
        return {
            "pulled": len(self.pulled),
            **{f"status_{s}": n for s, n in sorted(statuses.items())},
            "failed": len(self.failures),
            "stripe_requests": self.requests_sent,
            "errors": [f"{number}: {error}" for number, error in self.failures],
        }


@dataclass(frozen=True)
class OverdueInvoice:
    invoice_id: str
    number: str
    customer_id: str
    currency: str
    status: str
    amount_remaining: Decimal
    due_at: datetime
    days_overdue: int
    attempt_count: int


def receivable_from_stripe(ours: Mapping[str, str], stripe_invoice: Mapping) -> Receivable:
    """Pure: our ids (`ours`: invoice_id, number, close_month, customer_id) + Stripe's invoice."""
    currency = stripe_invoice["currency"].upper()
    exponent = minor_exponent(currency)
    transitions = stripe_invoice.get("status_transitions") or {}
    finalized_at = _instant(transitions.get("finalized_at"))
    due_date = _instant(stripe_invoice.get("due_date"))
    return Receivable(
        invoice_id=ours["invoice_id"],
        number=ours["number"],
        close_month=ours["close_month"],
        customer_id=ours["customer_id"],
        stripe_invoice_id=stripe_invoice["id"],
        currency=currency,
        currency_exponent=exponent,
        status=stripe_invoice["status"],
        collection_method=stripe_invoice.get("collection_method"),
        total=from_minor_units(stripe_invoice.get("total") or 0, exponent),
        amount_due=from_minor_units(stripe_invoice.get("amount_due") or 0, exponent),
        amount_paid=from_minor_units(stripe_invoice.get("amount_paid") or 0, exponent),
        amount_remaining=from_minor_units(stripe_invoice.get("amount_remaining") or 0, exponent),
        attempt_count=int(stripe_invoice.get("attempt_count") or 0),
        next_payment_attempt=_instant(stripe_invoice.get("next_payment_attempt")),
        due_date=due_date,
        # A charge_automatically invoice has no due date: it is due when finalized.
        due_at=due_date or finalized_at,
        finalized_at=finalized_at,
        paid_at=_instant(transitions.get("paid_at")),
        voided_at=_instant(transitions.get("voided_at")),
        hosted_invoice_url=stripe_invoice.get("hosted_invoice_url") or None,
    )


def _instant(epoch: int | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(int(epoch), UTC)


_TO_PULL_SQL = """
SELECT m.invoice_id, m.number, m.close_month, m.customer_id, m.stripe_invoice_id
FROM meterbook_stripe.invoices AS m
LEFT JOIN meterbook_stripe.accounts_receivable AS ar USING (invoice_id)
WHERE m.stripe_status <> 'deleted'
  AND (ar.status IS NULL OR ar.status NOT IN ('paid', 'void'))  -- final: never change again
ORDER BY m.close_month, m.number
"""

_COLUMNS = (
    "invoice_id", "number", "close_month", "customer_id", "stripe_invoice_id", "currency",
    "currency_exponent", "status", "collection_method", "total", "amount_due", "amount_paid",
    "amount_remaining", "attempt_count", "next_payment_attempt", "due_date", "due_at",
    "finalized_at", "paid_at", "voided_at", "pulled_at", "hosted_invoice_url", "first_failed_at",
)  # fmt: skip
# Every column is Stripe's latest word, except first_failed_at: once seen, it stays (the day
# dunning counts from must not move with each pull).
_UPSERT_SQL = f"""
INSERT INTO meterbook_stripe.accounts_receivable ({", ".join(_COLUMNS)})
VALUES ({", ".join("?" for _ in _COLUMNS)})
ON CONFLICT (invoice_id) DO UPDATE SET
    {", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[1:-1])},
    first_failed_at = coalesce(accounts_receivable.first_failed_at, excluded.first_failed_at)
"""


def pull_payment_status(
    con: duckdb.DuckDBPyConnection, client: StripeGateway, now: datetime
) -> PullResult:
    """Refresh accounts_receivable for every synced invoice not yet paid or void.

    A Stripe error on one invoice is recorded and the others go on; `StripeUnavailable`
    (Stripe unreachable) stops the pull. Rows already pulled stay as they were.
    """
    ensure_stripe_schema(con)
    requests_before = client.requests_sent
    pulled, failures = [], []
    for invoice_id, number, close_month, customer_id, stripe_id in con.execute(
        _TO_PULL_SQL
    ).fetchall():
        try:
            stripe_invoice = client.retrieve_invoice(stripe_id)
        except StripeApiError as exc:
            log.error("Stripe status of invoice %s not pulled: %s", number, exc)
            failures.append((number, str(exc)))
            continue
        ours = {
            "invoice_id": invoice_id,
            "number": number,
            "close_month": close_month,
            "customer_id": customer_id,
        }
        receivable = receivable_from_stripe(ours, stripe_invoice)
        _save(con, receivable, now)
        pulled.append(receivable)
    return PullResult(tuple(pulled), tuple(failures), client.requests_sent - requests_before)


def _save(con: duckdb.DuckDBPyConnection, r: Receivable, now: datetime) -> None:
    con.execute(
        _UPSERT_SQL,
        [
            r.invoice_id, r.number, r.close_month, r.customer_id, r.stripe_invoice_id,
            r.currency, r.currency_exponent, r.status, r.collection_method, r.total,
            r.amount_due, r.amount_paid, r.amount_remaining, r.attempt_count,
            r.next_payment_attempt, r.due_date, r.due_at, r.finalized_at, r.paid_at,
            r.voided_at, now, r.hosted_invoice_url, now if r.payment_failed else None,
        ],
    )  # fmt: skip
    set_stripe_status(con, r.invoice_id, r.status)


_OVERDUE_SQL = """
SELECT invoice_id, number, customer_id, currency, status, amount_remaining, due_at,
       attempt_count
FROM meterbook_stripe.accounts_receivable
WHERE status IN ('open', 'uncollectible')
  AND amount_remaining > 0
  AND due_at < ?
  -- an automatic charge is in progress until a payment attempt has failed
  AND (collection_method = 'send_invoice' OR attempt_count > 0)
ORDER BY due_at, number
"""


def overdue_invoices(con: duckdb.DuckDBPyConnection, now: datetime) -> list[OverdueInvoice]:
    """Open (or uncollectible) invoices past their due date, oldest first, as last pulled."""
    ensure_stripe_schema(con)
    overdue = []
    for row in con.execute(_OVERDUE_SQL, [now]).fetchall():
        invoice_id, number, customer_id, currency, status, remaining, due_at, attempts = row
        overdue.append(
            OverdueInvoice(
                invoice_id=invoice_id,
                number=number,
                customer_id=customer_id,
                currency=currency,
                status=status,
                amount_remaining=remaining,
                due_at=due_at,
                days_overdue=(now - due_at).days,
                attempt_count=attempts,
            )
        )
    return overdue
