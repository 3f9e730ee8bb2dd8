"""The append-only ledger of finalized invoices (schema meterbook_ledger).

Drafts live in the dbt marts and are rebuilt on every close; once an invoice is finalized its
rows here are never updated or deleted. A status change (void) is a new row in
`invoice_status_changes`, so the original stays as it was.
"""

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
"""


def ensure_ledger_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LEDGER_DDL)
