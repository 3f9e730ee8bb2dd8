"""The meterbook_ledger tables: finalized invoices and the wallet entries finalization made
permanent, append-only (billing/ledger.py reads and writes them; billing/finalize.py is the
only writer of new invoices and entries)."""

from __future__ import annotations

import duckdb

LEDGER_DDL = """
CREATE SCHEMA IF NOT EXISTS meterbook_ledger;
CREATE TABLE IF NOT EXISTS meterbook_ledger.invoices (
    invoice_id VARCHAR PRIMARY KEY,
    number VARCHAR NOT NULL UNIQUE,          -- PREFIX-YYYY-NNNNNN, gapless
    close_month VARCHAR NOT NULL,            -- 'YYYY-MM'
    customer_id VARCHAR NOT NULL,
    subscription_id VARCHAR NOT NULL,
    currency VARCHAR NOT NULL,
    currency_exponent INTEGER NOT NULL,
    period_start DATE NOT NULL,
    period_end DATE NOT NULL,
    subtotal DECIMAL(38, 12) NOT NULL,
    discount_total DECIMAL(38, 12) NOT NULL,
    tax_total DECIMAL(38, 12) NOT NULL,
    total DECIMAL(38, 12) NOT NULL,
    credits_applied DECIMAL(38, 12) NOT NULL,
    amount_due DECIMAL(38, 12) NOT NULL,
    finalized_at TIMESTAMPTZ NOT NULL,
    document JSON NOT NULL                   -- the invoice exactly as SPEC 5 prints it
);
CREATE TABLE IF NOT EXISTS meterbook_ledger.invoice_lines (
    invoice_id VARCHAR NOT NULL,
    line_id VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    kind VARCHAR NOT NULL,
    meter VARCHAR,
    fee_code VARCHAR,
    group_key JSON,
    description VARCHAR NOT NULL,
    period_start DATE NOT NULL,
    period_end DATE NOT NULL,
    quantity DECIMAL(38, 12),
    billable_quantity DECIMAL(38, 12),
    unit_price DECIMAL(38, 12),
    amount DECIMAL(38, 12) NOT NULL,
    PRIMARY KEY (invoice_id, line_id)
);
CREATE TABLE IF NOT EXISTS meterbook_ledger.invoice_status_changes (
    invoice_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,                 -- 'finalized' | 'void'
    changed_at TIMESTAMPTZ NOT NULL,
    reason VARCHAR
);
CREATE TABLE IF NOT EXISTS meterbook_ledger.invoice_numbers (
    number_prefix VARCHAR NOT NULL,
    number_year INTEGER NOT NULL,            -- the year of the close month
    number_seq INTEGER NOT NULL,             -- 1, 2, 3, ... per (prefix, year), no gaps
    number VARCHAR NOT NULL UNIQUE,
    invoice_id VARCHAR NOT NULL UNIQUE,
    PRIMARY KEY (number_prefix, number_year, number_seq)
);
CREATE TABLE IF NOT EXISTS meterbook_ledger.period_finalizations (
    close_month VARCHAR NOT NULL,
    finalized_at TIMESTAMPTZ NOT NULL,
    invoice_count INTEGER NOT NULL,
    raw_read_seq BIGINT NOT NULL             -- the drafts' last raw event (read_seq), 0 if none
);
CREATE TABLE IF NOT EXISTS meterbook_ledger.wallet_entries (
    close_month VARCHAR NOT NULL,            -- the close that made the entry
    seq INTEGER NOT NULL,                    -- its order in that close
    entry_id VARCHAR PRIMARY KEY,
    entry_type VARCHAR NOT NULL,             -- grant | draw | expire | rollover | void
    customer_id VARCHAR NOT NULL,
    grant_id VARCHAR NOT NULL,
    grant_kind VARCHAR NOT NULL,             -- promotional | paid
    amount DECIMAL(38, 12) NOT NULL,         -- signed: what it does to the grant's balance
    entry_date DATE NOT NULL,
    currency VARCHAR NOT NULL,
    invoice_id VARCHAR,                      -- draws and purchases: the invoice
    line_id VARCHAR,                         -- its promotional_credit or credit_purchase line
    charge_line_id VARCHAR,                  -- promotional draws: the line paid for
    grant_source VARCHAR,                    -- grant entries: catalog | plan | rollover | top_up
    subscription_id VARCHAR,
    granted_on DATE,
    expires_on DATE,
    priority INTEGER,
    applies_to VARCHAR,
    rollover_max DECIMAL(38, 12),
    grant_amount DECIMAL(38, 12),
    finalized_at TIMESTAMPTZ NOT NULL
);
-- Credit notes (SPEC 11): written once by billing/credit_notes/issue.py, never changed.
CREATE TABLE IF NOT EXISTS meterbook_ledger.credit_notes (
    credit_note_id VARCHAR PRIMARY KEY,
    number VARCHAR NOT NULL UNIQUE,          -- CN-YYYY-NNNNNN, gapless per year of issue
    invoice_id VARCHAR NOT NULL,             -- the finalized invoice it credits
    invoice_number VARCHAR NOT NULL,
    customer_id VARCHAR NOT NULL,
    subscription_id VARCHAR NOT NULL,
    currency VARCHAR NOT NULL,
    currency_exponent INTEGER NOT NULL,
    issued_on DATE NOT NULL,                 -- UTC day of issue: revenue reverses on it
    issued_at TIMESTAMPTZ NOT NULL,
    reason VARCHAR NOT NULL,
    -- what the credit does: reduce_due (the invoice was unpaid: it owes less),
    -- refund (paid: refunded through Stripe), wallet (paid: a paid grant in the wallet)
    settlement VARCHAR NOT NULL CHECK (settlement IN ('reduce_due', 'refund', 'wallet')),
    subtotal DECIMAL(38, 12) NOT NULL,       -- the lines credited, before tax
    tax_total DECIMAL(38, 12) NOT NULL,      -- tax credited in proportion
    total DECIMAL(38, 12) NOT NULL,          -- subtotal + tax_total
    document JSON NOT NULL,                  -- the credit note as `meterbook credit-note --json`
    html VARCHAR NOT NULL                    -- its HTML document, as issued
);
CREATE TABLE IF NOT EXISTS meterbook_ledger.credit_note_lines (
    credit_note_id VARCHAR NOT NULL,
    line_id VARCHAR NOT NULL,                -- the invoice line credited
    position INTEGER NOT NULL,               -- its order in the credit note
    kind VARCHAR NOT NULL,
    description VARCHAR NOT NULL,
    amount DECIMAL(38, 12) NOT NULL,         -- credited, before tax
    tax_amount DECIMAL(38, 12) NOT NULL,     -- this line's share of the credit's tax
    PRIMARY KEY (credit_note_id, line_id)
);
CREATE TABLE IF NOT EXISTS meterbook_ledger.credit_note_numbers (
    number_year INTEGER NOT NULL,            -- the year of issued_on
    number_seq INTEGER NOT NULL,             -- 1, 2, 3, ... per year, no gaps
    number VARCHAR NOT NULL UNIQUE,
    credit_note_id VARCHAR NOT NULL UNIQUE,
    PRIMARY KEY (number_year, number_seq)
);
-- Per invoice: what its credit notes took, by settlement (no row: never credited).
CREATE OR REPLACE VIEW meterbook_ledger.invoice_credits AS
SELECT invoice_id,
       count(*) AS credit_notes,
       sum(total) AS credited_total,
       sum(total) FILTER (WHERE settlement = 'reduce_due') AS reduced_due,
       sum(total) FILTER (WHERE settlement = 'refund') AS refunded,
       sum(total) FILTER (WHERE settlement = 'wallet') AS to_wallet
FROM meterbook_ledger.credit_notes
GROUP BY invoice_id;
CREATE OR REPLACE VIEW meterbook_ledger.current_invoice_status AS
SELECT invoice_id,
       CASE WHEN bool_or(status = 'void') THEN 'void' ELSE 'finalized' END AS status,
       max(changed_at) AS changed_at
FROM meterbook_ledger.invoice_status_changes
GROUP BY invoice_id;
"""


def ensure_ledger_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LEDGER_DDL)
