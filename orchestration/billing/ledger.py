"""The append-only ledger of finalized invoices (schema meterbook_ledger).

Drafts live in the dbt marts and are rebuilt on every close; once an invoice is finalized its
rows here are never updated or deleted. A status change (void) is a new row in
`invoice_status_changes`, so the original stays as it was.

Tables (only `finalize.py` inserts; nothing updates or deletes):
- `invoices`: one row per finalized invoice; `document` is the SPEC 5 invoice exactly as it
  was frozen (number set, status "finalized"), byte for byte.
- `invoice_lines`: the frozen lines, in document order (`position`).
- `invoice_status_changes`: 'finalized' once, then at most one 'void'. Void is terminal, so
  the current status is 'void' as soon as a void row exists (view `current_invoice_status`).
- `invoice_numbers`: one row per number given, keyed by (prefix, year, seq): the gapless
  sequences, checkable with one query.
- `period_finalizations`: one row per finalize call that froze something, with the last
  `raw_events.read_seq` the frozen drafts were built from (the late-event watermark of
  `adjustments.py`; see `freshness.py`).
"""

from __future__ import annotations

import json
from typing import Any

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
CREATE OR REPLACE VIEW meterbook_ledger.current_invoice_status AS
SELECT invoice_id,
       CASE WHEN bool_or(status = 'void') THEN 'void' ELSE 'finalized' END AS status,
       max(changed_at) AS changed_at
FROM meterbook_ledger.invoice_status_changes
GROUP BY invoice_id;
"""


def ensure_ledger_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(LEDGER_DDL)


def ledger_documents(
    con: duckdb.DuckDBPyConnection, period: str, customer_id: str | None = None
) -> list[dict[str, Any]]:
    """The frozen SPEC 5 invoices of `period`, each with its current status applied."""
    ensure_ledger_schema(con)
    rows = con.execute(
        """
        SELECT i.document, s.status
        FROM meterbook_ledger.invoices AS i
        JOIN meterbook_ledger.current_invoice_status AS s USING (invoice_id)
        WHERE i.close_month = ? AND (? IS NULL OR i.customer_id = ?)
        ORDER BY i.number
        """,
        [period, customer_id, customer_id],
    ).fetchall()
    documents = []
    for text, status in rows:
        invoice = json.loads(text)
        invoice["status"] = status
        documents.append(invoice)
    return documents


def invoice_status(con: duckdb.DuckDBPyConnection, invoice_id: str) -> str | None:
    """'finalized' or 'void' for a ledger invoice; None for one never finalized (a draft)."""
    ensure_ledger_schema(con)
    rows = con.execute(
        "SELECT status FROM meterbook_ledger.current_invoice_status WHERE invoice_id = ?",
        [invoice_id],
    ).fetchall()  # fetchall: DuckDB 2 keeps a half-read result open after fetchone
    return rows[0][0] if rows else None


def invoices_with_ledger(
    con: duckdb.DuckDBPyConnection,
    period: str,
    customer_id: str | None = None,
    drafts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """SPEC 5 document of `period`: finalized/void invoices from the ledger, drafts otherwise.

    A draft is hidden when its invoice id, or its subscription in this close month, is already
    in the ledger: a finalized invoice is never shown twice nor replaced by a re-rated draft.
    `drafts` defaults to `invoice_json.invoices_document(con, period, customer_id)`.
    Invoices are ordered by customer, subscription, period start and id.
    """
    if drafts is None:
        drafts = draft_document(con, period, customer_id)
    frozen = ledger_documents(con, period, customer_id)
    ids = {inv["invoice_id"] for inv in frozen}
    subscriptions = {inv["subscription_id"] for inv in frozen}
    open_drafts = [
        inv
        for inv in drafts.get("invoices", [])
        if inv["invoice_id"] not in ids
        and inv["subscription_id"] not in subscriptions
        and (customer_id is None or inv["customer_id"] == customer_id)
    ]
    invoices = sorted([*frozen, *open_drafts], key=invoice_sort_key)
    return {"period": period, "invoices": invoices}


def invoice_sort_key(invoice: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        invoice["customer_id"],
        invoice["subscription_id"],
        invoice["period_start"],
        invoice["invoice_id"],
    )


def draft_document(
    con: duckdb.DuckDBPyConnection, period: str, customer_id: str | None
) -> dict[str, Any]:
    # Imported here: rating owns invoice_json and the ledger must load without it.
    from orchestration.billing.invoice_json import invoices_document

    return invoices_document(con, period, customer_id=customer_id)
