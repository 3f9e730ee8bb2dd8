"""Stripe: push finalized invoices and credit notes, pull their payment status, exactly once.

- `client.py`: `StripeConfig` (env: STRIPE_API_KEY, STRIPE_API_BASE), `StripeGateway` (the SDK
  with bounded, injectable-sleep retries and redacted errors).
- `payloads.py`: pure builders of every request body, idempotency keys and search queries.
- `sync.py`: `sync_period(con, catalog, period, client) -> SyncResult` (map -> push -> reconcile),
  then the credit notes of the month's invoices.
- `credit_notes.py`: `push_credit_notes(con, client, now=..., credit_note_ids=...)
  -> CreditNoteSyncResult` (credit notes and their refunds, looked up before created).
- `status.py`: `pull_payment_status(con, client, now)`, `overdue_invoices(con, now)`.
- `mapping.py`: the `meterbook_stripe` tables.
"""

from integrations.stripe.client import RetryPolicy, StripeConfig, StripeGateway
from integrations.stripe.credit_notes import CreditNoteSyncResult, push_credit_notes
from integrations.stripe.errors import (
    StripeApiError,
    StripeConfigError,
    StripeError,
    StripeUnavailable,
    SyncError,
)
from integrations.stripe.status import PullResult, overdue_invoices, pull_payment_status
from integrations.stripe.sync import SyncResult, sync_period
from orchestration.warehouse.stripe import ensure_stripe_schema

__all__ = [
    "CreditNoteSyncResult",
    "PullResult",
    "RetryPolicy",
    "StripeApiError",
    "StripeConfig",
    "StripeConfigError",
    "StripeError",
    "StripeGateway",
    "StripeUnavailable",
    "SyncError",
    "SyncResult",
    "ensure_stripe_schema",
    "overdue_invoices",
    "pull_payment_status",
    "push_credit_notes",
    "sync_period",
]
