"""The meterbook_stripe tables: which Stripe object is which of ours, and what Stripe says
(integrations/stripe/ writes them; see its mapping.py for why they are only a cache)."""

from __future__ import annotations

import duckdb

STRIPE_DDL = """
CREATE SCHEMA IF NOT EXISTS meterbook_stripe;
CREATE TABLE IF NOT EXISTS meterbook_stripe.customers (
    customer_id VARCHAR PRIMARY KEY,
    stripe_customer_id VARCHAR NOT NULL,
    mapped_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS meterbook_stripe.invoices (
    invoice_id VARCHAR PRIMARY KEY,
    number VARCHAR NOT NULL,
    close_month VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    stripe_customer_id VARCHAR NOT NULL,
    stripe_invoice_id VARCHAR NOT NULL,
    currency VARCHAR NOT NULL,
    stripe_status VARCHAR NOT NULL,      -- as last seen: draft | open | paid | uncollectible | void
    expected_total_minor BIGINT,         -- what the Stripe invoice must total: our amount_due
    stripe_total_minor BIGINT,           -- Stripe's total, once finalized there
    mapped_at TIMESTAMPTZ NOT NULL,
    pushed_at TIMESTAMPTZ,               -- finalized in Stripe and its total checked
    voided_at TIMESTAMPTZ                -- voided in Stripe because the ledger voided it
);
CREATE TABLE IF NOT EXISTS meterbook_stripe.invoice_items (
    invoice_id VARCHAR NOT NULL,
    item_ref VARCHAR NOT NULL,           -- our line_id, or 'meterbook:tax' / 'meterbook:credits'
    stripe_invoice_item_id VARCHAR NOT NULL,
    stripe_invoice_id VARCHAR NOT NULL,
    amount_minor BIGINT NOT NULL,
    mapped_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (invoice_id, item_ref)
);
-- Bumped when Stripe refuses a keyed request (4xx): it created nothing, and Stripe would
-- replay the refusal under the same key for 24 hours even after the cause is fixed.
CREATE TABLE IF NOT EXISTS meterbook_stripe.idempotency_generations (
    base_key VARCHAR PRIMARY KEY,
    generation INTEGER NOT NULL,
    last_error VARCHAR NOT NULL,
    refused_at TIMESTAMPTZ NOT NULL
);
-- Credit notes and refunds pushed (integrations/stripe/credit_notes.py), one row each, written
-- right after Stripe answered; like the invoices, Stripe's objects carry our id in metadata.
CREATE TABLE IF NOT EXISTS meterbook_stripe.credit_notes (
    credit_note_id VARCHAR PRIMARY KEY,      -- meterbook_ledger.credit_notes
    number VARCHAR NOT NULL,
    invoice_id VARCHAR NOT NULL,
    stripe_invoice_id VARCHAR NOT NULL,
    stripe_credit_note_id VARCHAR NOT NULL,
    stripe_refund_id VARCHAR,                -- settlement 'refund' only
    total_minor BIGINT NOT NULL,             -- Stripe's total, checked against ours
    pushed_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS meterbook_stripe.refunds (
    credit_note_id VARCHAR PRIMARY KEY,
    stripe_refund_id VARCHAR NOT NULL,
    amount_minor BIGINT NOT NULL,
    status VARCHAR NOT NULL,
    refunded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS meterbook_stripe.accounts_receivable (
    invoice_id VARCHAR PRIMARY KEY,
    number VARCHAR NOT NULL,
    close_month VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    stripe_invoice_id VARCHAR NOT NULL,
    currency VARCHAR NOT NULL,
    currency_exponent INTEGER NOT NULL,
    status VARCHAR NOT NULL,             -- Stripe's: draft | open | paid | uncollectible | void
    collection_method VARCHAR,
    total DECIMAL(38, 12) NOT NULL,
    amount_due DECIMAL(38, 12) NOT NULL,
    amount_paid DECIMAL(38, 12) NOT NULL,
    amount_remaining DECIMAL(38, 12) NOT NULL,
    attempt_count INTEGER NOT NULL,
    next_payment_attempt TIMESTAMPTZ,
    due_date TIMESTAMPTZ,                -- Stripe's due date (send_invoice only)
    due_at TIMESTAMPTZ,                  -- due_date, or finalization for charge_automatically
    finalized_at TIMESTAMPTZ,
    paid_at TIMESTAMPTZ,
    voided_at TIMESTAMPTZ,
    pulled_at TIMESTAMPTZ NOT NULL,
    hosted_invoice_url VARCHAR,          -- Stripe's payment page, linked from dunning reminders
    -- when a pull first saw a failed automatic charge (attempt_count > 0 on an open invoice):
    -- Stripe's invoice gives no date for it, and dunning counts the days overdue from it
    first_failed_at TIMESTAMPTZ
);
-- warehouses made before these columns (appended, so old and new tables have one column order)
ALTER TABLE meterbook_stripe.accounts_receivable ADD COLUMN IF NOT EXISTS hosted_invoice_url VARCHAR;
ALTER TABLE meterbook_stripe.accounts_receivable ADD COLUMN IF NOT EXISTS first_failed_at TIMESTAMPTZ;
"""


def ensure_stripe_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(STRIPE_DDL)
