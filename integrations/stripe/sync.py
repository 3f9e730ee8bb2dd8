"""Push one month's finalized invoices to Stripe, exactly once: map -> push -> reconcile.

For each ledger invoice of the month, in number order:

1. map: the Stripe customer and invoice are found before anything is created, in this order:
   our mapping table, then Stripe itself by our id in metadata (search API), and only then
   created with a deterministic idempotency key. Both are needed: search can lag behind
   writes by a minute (so a re-run right after a crash may not see what it created; the
   idempotency key returns it instead), and keys expire after 24 hours (so a re-run days
   later relies on search, which has caught up by then).
2. push: items are listed (a list is strongly consistent) and only the missing ones created,
   each with its own key; then the invoice is finalized. Nothing is finalized unless every
   item is there with exactly our amount.
3. reconcile: Stripe's total must equal the ledger's amount due, to the minor unit.

Then the credit notes of the month's invoices not in Stripe yet are pushed (credit_notes.py),
so a re-run catches up any whose own push failed; their counts are in the result's metadata.

A ledger invoice that is void is voided in Stripe if it reached Stripe (a draft there is
deleted: Stripe cannot void drafts). A 4xx, or a 429/5xx that outlasts the retries, fails
that invoice (its error is in the result) and the run goes on; if Stripe cannot be reached
at all, `StripeUnavailable` stops the run. Re-running is always safe.

How the Dagster assets call this (orchestration/defs/stripe/assets.py):

    gateway = stripe_resource.gateway()          # orchestration/defs/stripe/resource.py
    with meterbook.warehouse() as con:
        result = sync_period(con, meterbook.catalog(), context.partition_key, gateway)
    context.add_output_metadata(result.metadata())
    result.raise_for_failures()                  # after the metadata, so both are kept
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from integrations.stripe.client import StripeGateway
from integrations.stripe.credit_notes import (
    CreditNoteSyncResult,
    failure_lines,
    push_credit_notes,
)
from integrations.stripe.errors import StripeApiError, SyncError, at_most_one
from integrations.stripe.mapping import (
    IdempotencyKeys,
    InvoiceMapping,
    customer_mapping,
    invoice_mapping,
    save_customer,
    save_invoice,
    save_items,
)
from integrations.stripe.payloads import (
    META_CUSTOMER,
    META_INVOICE,
    META_LINE,
    InvoicePlan,
    customer_params,
    finalize_params,
    invoice_item_params,
    invoice_params,
    metadata_query,
    plan_invoice,
)
from integrations.stripe.records import LedgerInvoice, load_period_invoices
from orchestration.billing.month import BillingMonth
from orchestration.catalog.models import Catalog, Customer
from orchestration.warehouse.stripe import ensure_stripe_schema
from orchestration.workspace import now_utc

log = logging.getLogger(__name__)

# Stripe statuses of an invoice that has been finalized there.
FINALIZED_IN_STRIPE = frozenset({"open", "paid", "uncollectible"})


@dataclass(frozen=True)
class InvoiceOutcome:
    invoice_id: str
    number: str
    # pushed | already_synced | voided | not_in_stripe | failed
    action: str
    stripe_invoice_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class SyncResult:
    period: str
    outcomes: tuple[InvoiceOutcome, ...]
    requests_sent: int
    creates_sent: int
    credit_notes: CreditNoteSyncResult = CreditNoteSyncResult((), 0, 0)

    @property
    def failures(self) -> tuple[InvoiceOutcome, ...]:
        """The invoices that failed (the credit notes' are `credit_notes.failures`)."""
        return tuple(o for o in self.outcomes if o.action == "failed")

    def metadata(self) -> dict[str, object]:
        """Plain values for the asset's metadata (no secrets: ids, counts and errors)."""
        counts = Counter(o.action for o in self.outcomes)
        return {
            "period": self.period,
            "invoices": len(self.outcomes),
            **{a: counts.get(a, 0) for a in ("pushed", "already_synced", "voided", "failed")},
            "not_in_stripe": counts.get("not_in_stripe", 0),
            "stripe_requests": self.requests_sent,
            "stripe_creates": self.creates_sent,
            "errors": [f"{o.number}: {o.error}" for o in self.failures],
            "credit_notes": len(self.credit_notes.outcomes),
            **{f"credit_notes_{a}": n for a, n in self.credit_notes.counts().items()},
            "credit_note_errors": self.credit_notes.errors(),
        }

    def raise_for_failures(self) -> None:
        parts = []
        if self.failures:
            lines = "\n".join(f"  {o.number} ({o.invoice_id}): {o.error}" for o in self.failures)
            parts.append(
                f"{len(self.failures)} invoice(s) of {self.period} not synced to Stripe:\n{lines}"
            )
        notes = self.credit_notes.failures
        if notes:
            parts.append(
                f"{len(notes)} credit note(s) of {self.period}'s invoices not pushed to "
                f"Stripe:\n{failure_lines(notes)}"
            )
        if parts:
            raise SyncError("\n".join(parts))


def sync_period(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    close_month: str,
    client: StripeGateway,
    *,
    now: datetime | None = None,
    collect: bool = True,
) -> SyncResult:
    """Push the finalized invoices of close month `close_month` (and voids) to Stripe.

    `collect`: on finalization, hand collection to Stripe (`auto_advance` on: it charges the
    customer's card, or emails a `send_invoice` invoice). Drafts are always built with it off.
    """
    BillingMonth.parse(close_month)
    ensure_stripe_schema(con)
    requests_before, creates_before = client.requests_sent, client.creates_sent
    now = now or now_utc()
    run = _Run(con, catalog, client, now, collect, IdempotencyKeys.load(con, now))
    invoices = load_period_invoices(con, close_month)
    outcomes = tuple(run.sync_one(invoice) for invoice in invoices)
    # After the invoices: a credit note needs its invoice in Stripe.
    credit_notes = push_credit_notes(
        con, client, now=now, invoice_ids=[invoice.invoice_id for invoice in invoices]
    )
    return SyncResult(
        close_month,
        outcomes,
        client.requests_sent - requests_before,
        client.creates_sent - creates_before,
        credit_notes,
    )


@dataclass
class _Run:
    con: duckdb.DuckDBPyConnection
    catalog: Catalog
    client: StripeGateway
    now: datetime
    collect: bool
    keys: IdempotencyKeys
    stripe_customers: dict[str, str] = field(default_factory=dict)

    def sync_one(self, invoice: LedgerInvoice) -> InvoiceOutcome:
        try:
            outcome = self._void(invoice) if invoice.status == "void" else self._push(invoice)
            log.info("Stripe sync of invoice %s: %s", invoice.number, outcome.action)
            return outcome
        except (StripeApiError, SyncError) as exc:
            log.error("Stripe sync of invoice %s failed: %s", invoice.number, exc)
            mapping = invoice_mapping(self.con, invoice.invoice_id)
            stripe_id = mapping.stripe_invoice_id if mapping else None
            return InvoiceOutcome(invoice.invoice_id, invoice.number, "failed", stripe_id, str(exc))

    # -- push ----------------------------------------------------------------------------

    def _push(self, invoice: LedgerInvoice) -> InvoiceOutcome:
        mapping = invoice_mapping(self.con, invoice.invoice_id)
        if mapping and mapping.pushed_at and mapping.stripe_status in FINALIZED_IN_STRIPE:
            return _outcome(invoice, "already_synced", mapping.stripe_invoice_id)
        customer = self._catalog_customer(invoice)
        plan = plan_invoice(invoice, customer)
        stripe_customer_id = self._stripe_customer(customer)
        stripe_invoice, new = self._stripe_invoice(invoice, customer, stripe_customer_id, mapping)
        save_invoice(
            self.con, invoice, stripe_invoice, self.now, expected_total_minor=plan.total_minor
        )
        status = stripe_invoice["status"]
        if status == "draft":
            self._push_items(plan, stripe_invoice, new)
            stripe_id, params = stripe_invoice["id"], finalize_params(self.collect)
            stripe_invoice = self.keys.send(
                lambda key: self.client.finalize_invoice(stripe_id, params, key),
                "finalize",
                invoice.invoice_id,
            )
        elif status in FINALIZED_IN_STRIPE:
            self._check_finalized_items(plan, stripe_invoice)
        else:
            raise SyncError(
                f"Stripe invoice {stripe_invoice['id']} is {status} but {invoice.number} is "
                "finalized in the ledger; resolve it in Stripe (nothing was created)"
            )
        _reconcile(plan, stripe_invoice)
        save_invoice(self.con, invoice, stripe_invoice, self.now, pushed=True)
        return _outcome(invoice, "pushed", stripe_invoice["id"])

    def _catalog_customer(self, invoice: LedgerInvoice) -> Customer:
        for customer in self.catalog.customers:
            if customer.id == invoice.customer_id:
                return customer
        raise SyncError(
            f"customer {invoice.customer_id!r} of invoice {invoice.number} is not in the catalog"
        )

    def _stripe_customer(self, customer: Customer) -> str:
        if customer.id not in self.stripe_customers:
            stripe_id = customer_mapping(self.con, customer.id) or self._find_or_create_customer(
                customer
            )
            save_customer(self.con, customer.id, stripe_id, self.now)
            self.stripe_customers[customer.id] = stripe_id
        return self.stripe_customers[customer.id]

    def _find_or_create_customer(self, customer: Customer) -> str:
        found = self.client.search_customers(metadata_query(META_CUSTOMER, customer.id))
        at_most_one(found, f"customers for {customer.id!r}")
        if found:
            return found[0]["id"]
        created, _ = self.keys.send(
            lambda key: self.client.create_customer(customer_params(customer), key),
            "customer",
            customer.id,
        )
        return created["id"]

    def _stripe_invoice(
        self,
        invoice: LedgerInvoice,
        customer: Customer,
        stripe_customer_id: str,
        mapping: InvoiceMapping | None,
    ) -> tuple[dict, bool]:
        """The Stripe invoice of `invoice` as it is now, and whether this call created it."""
        if mapping:
            return self.client.retrieve_invoice(mapping.stripe_invoice_id), False
        found = self._search_invoice(invoice)
        if found:
            if found["customer"] != stripe_customer_id:
                raise SyncError(
                    f"Stripe invoice {found['id']} of {invoice.number} belongs to customer "
                    f"{found['customer']}, not {stripe_customer_id} ({customer.id})"
                )
            return found, False
        params = invoice_params(invoice, customer, stripe_customer_id)
        created, replayed = self.keys.send(
            lambda key: self.client.create_invoice(params, key), "invoice", invoice.invoice_id
        )
        if replayed:
            # The first response, from a run that died: its status and items may have moved on.
            return self.client.retrieve_invoice(created["id"]), False
        return created, True

    def _search_invoice(self, invoice: LedgerInvoice) -> dict | None:
        found = self.client.search_invoices(metadata_query(META_INVOICE, invoice.invoice_id))
        at_most_one(found, f"invoices for {invoice.number}")
        return found[0] if found else None

    def _push_items(self, plan: InvoicePlan, stripe_invoice: dict, new: bool) -> None:
        invoice = plan.invoice
        # An invoice this run just created has no items yet: no need to list them.
        existing = {} if new else self._existing_items(plan, stripe_invoice)
        pushed = []
        for item in plan.items:
            stripe_item = existing.get(item.ref)
            if stripe_item is None:
                params = invoice_item_params(
                    item, invoice, stripe_invoice["customer"], stripe_invoice["id"]
                )
                stripe_item, _ = self.keys.send(
                    lambda key, p=params: self.client.create_invoice_item(p, key),
                    "item",
                    invoice.invoice_id,
                    item.ref,
                )
                _check_item(plan, stripe_item, item.amount_minor)
            pushed.append((item.ref, stripe_item))
        save_items(self.con, invoice.invoice_id, pushed, self.now)

    def _existing_items(self, plan: InvoicePlan, stripe_invoice: dict) -> dict[str, dict]:
        """The invoice's items by our ref; refuses anything we would not have put there."""
        planned = {item.ref: item.amount_minor for item in plan.items}
        by_ref: dict[str, dict] = {}
        for stripe_item in self.client.list_invoice_items(stripe_invoice["id"]):
            ref = (stripe_item.get("metadata") or {}).get(META_LINE)
            if ref not in planned or ref in by_ref:
                raise SyncError(
                    f"Stripe invoice {stripe_invoice['id']} of {plan.invoice.number} holds "
                    f"item {stripe_item['id']} that is not one of its lines (or a second copy "
                    f"of line {ref!r}); remove it in Stripe and re-run"
                )
            _check_item(plan, stripe_item, planned[ref])
            by_ref[ref] = stripe_item
        return by_ref

    def _check_finalized_items(self, plan: InvoicePlan, stripe_invoice: dict) -> None:
        existing = self._existing_items(plan, stripe_invoice)
        missing = [item.ref for item in plan.items if item.ref not in existing]
        if missing:
            raise SyncError(
                f"Stripe invoice {stripe_invoice['id']} of {plan.invoice.number} was finalized "
                f"without lines {', '.join(missing)}; void it in Stripe and re-run"
            )
        pairs = [(item.ref, existing[item.ref]) for item in plan.items]
        save_items(self.con, plan.invoice.invoice_id, pairs, self.now)

    # -- void ----------------------------------------------------------------------------

    def _void(self, invoice: LedgerInvoice) -> InvoiceOutcome:
        mapping = invoice_mapping(self.con, invoice.invoice_id)
        if mapping and mapping.stripe_status in ("void", "deleted"):
            return _outcome(invoice, "already_synced", mapping.stripe_invoice_id)
        stripe_invoice = self._void_target(invoice, mapping)
        if stripe_invoice is None:
            return _outcome(invoice, "not_in_stripe")
        status = stripe_invoice["status"]
        if status == "draft":
            self.client.delete_draft_invoice(stripe_invoice["id"])
            stripe_invoice = {**stripe_invoice, "status": "deleted"}
        elif status in ("open", "uncollectible"):
            stripe_id = stripe_invoice["id"]
            stripe_invoice = self.keys.send(
                lambda key: self.client.void_invoice(stripe_id, key), "void", invoice.invoice_id
            )
        elif status != "void":
            raise SyncError(
                f"{invoice.number} is void in the ledger but {status} in Stripe "
                f"({stripe_invoice['id']}): refund it or issue a credit note in Stripe"
            )
        save_invoice(self.con, invoice, stripe_invoice, self.now, voided=True)
        return _outcome(invoice, "voided", stripe_invoice["id"])

    def _void_target(self, invoice: LedgerInvoice, mapping: InvoiceMapping | None) -> dict | None:
        if mapping is None:
            return self._search_invoice(invoice)
        try:
            return self.client.retrieve_invoice(mapping.stripe_invoice_id)
        except StripeApiError as exc:
            if exc.status != 404:
                raise
            # Only a deleted draft disappears: a run that deleted it died before recording it.
            return {
                "id": mapping.stripe_invoice_id,
                "customer": mapping.stripe_customer_id,
                "status": "deleted",
            }


def _outcome(invoice: LedgerInvoice, action: str, stripe_id: str | None = None) -> InvoiceOutcome:
    return InvoiceOutcome(invoice.invoice_id, invoice.number, action, stripe_id)


def _check_item(plan: InvoicePlan, stripe_item: dict, amount_minor: int) -> None:
    if stripe_item["amount"] != amount_minor:
        raise SyncError(
            f"Stripe item {stripe_item['id']} of {plan.invoice.number} is "
            f"{stripe_item['amount']} minor units, the ledger says {amount_minor}"
        )


def _reconcile(plan: InvoicePlan, stripe_invoice: dict) -> None:
    currency = plan.invoice.currency.lower()
    if stripe_invoice["total"] != plan.total_minor or stripe_invoice["currency"] != currency:
        raise SyncError(
            f"Stripe invoice {stripe_invoice['id']} of {plan.invoice.number} totals "
            f"{stripe_invoice['total']} {stripe_invoice['currency']}, the ledger's amount due "
            f"is {plan.total_minor} {currency} (minor units)"
        )
