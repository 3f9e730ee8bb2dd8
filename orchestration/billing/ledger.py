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

from orchestration.warehouse.ledger import ensure_ledger_schema


def group_json(group: dict[str, Any] | None) -> str | None:
    """One text per group: sorted keys, no spaces; None for no group (null and {} alike)."""
    if not group:
        return None
    return json.dumps(group, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def ledger_documents(
    con: duckdb.DuckDBPyConnection, close_month: str, customer_id: str | None = None
) -> list[dict[str, Any]]:
    """The frozen SPEC 5 invoices of `close_month`, each with its current status applied."""
    ensure_ledger_schema(con)
    rows = con.execute(
        """
        SELECT i.document, s.status
        FROM meterbook_ledger.invoices AS i
        JOIN meterbook_ledger.current_invoice_status AS s USING (invoice_id)
        WHERE i.close_month = ? AND (? IS NULL OR i.customer_id = ?)
        ORDER BY i.number
        """,
        [close_month, customer_id, customer_id],
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
    close_month: str,
    customer_id: str | None = None,
    drafts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """SPEC 5 document of `close_month`: finalized/void invoices from the ledger, drafts otherwise.

    A draft is hidden when its invoice id, or its subscription in this close month, is already
    in the ledger: a finalized invoice is never shown twice nor replaced by a re-rated draft.
    `drafts` defaults to `invoice_json.invoices_document(con, period, customer_id)`.
    Invoices are ordered by customer, subscription, period start and id.
    """
    if drafts is None:
        drafts = draft_document(con, close_month, customer_id)
    frozen = ledger_documents(con, close_month, customer_id)
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
    return {"period": close_month, "invoices": invoices}


def invoice_sort_key(invoice: dict[str, Any]) -> tuple[str, str, str, str]:
    return (
        invoice["customer_id"],
        invoice["subscription_id"],
        invoice["period_start"],
        invoice["invoice_id"],
    )


def draft_document(
    con: duckdb.DuckDBPyConnection, close_month: str, customer_id: str | None
) -> dict[str, Any]:
    # Imported here: rating owns invoice_json and the ledger must load without it.
    from orchestration.billing.invoice_json import invoices_document

    return invoices_document(con, close_month, customer_id=customer_id)
