"""Our side of the sync: the finalized (and voided) invoices of one month, from the ledger.

Only `meterbook_ledger` is read (see docs/ARCHITECTURE.md); nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import duckdb

from orchestration.billing.month import BillingMonth
from orchestration.warehouse.ledger import ensure_ledger_schema


@dataclass(frozen=True)
class LedgerLine:
    line_id: str
    position: int
    kind: str
    description: str
    period_start: date
    period_end: date
    quantity: Decimal | None
    amount: Decimal


@dataclass(frozen=True)
class LedgerInvoice:
    invoice_id: str
    number: str
    close_month: str
    customer_id: str
    subscription_id: str
    currency: str
    period_start: date
    period_end: date
    subtotal: Decimal
    tax_total: Decimal
    total: Decimal
    credits_applied: Decimal
    amount_due: Decimal
    status: str  # 'finalized' | 'void' (the current status in the ledger)
    lines: tuple[LedgerLine, ...]


_INVOICES_SQL = """
WITH current_status AS (
    -- void is terminal: one void row makes the invoice void, whatever came after
    SELECT invoice_id, CASE WHEN bool_or(status = 'void') THEN 'void' ELSE 'finalized' END AS status
    FROM meterbook_ledger.invoice_status_changes
    GROUP BY invoice_id
)
SELECT i.invoice_id, i.number, i.close_month, i.customer_id, i.subscription_id, i.currency,
       i.period_start, i.period_end, i.subtotal, i.tax_total, i.total, i.credits_applied,
       i.amount_due, coalesce(s.status, 'finalized') AS status
FROM meterbook_ledger.invoices AS i
LEFT JOIN current_status AS s USING (invoice_id)
WHERE i.close_month = ?
ORDER BY i.number
"""

_LINES_SQL = """
SELECT l.invoice_id, l.line_id, l.position, l.kind, l.description, l.period_start,
       l.period_end, l.quantity, l.amount
FROM meterbook_ledger.invoice_lines AS l
JOIN meterbook_ledger.invoices AS i USING (invoice_id)
WHERE i.close_month = ?
ORDER BY l.invoice_id, l.position, l.line_id
"""


def load_period_invoices(con: duckdb.DuckDBPyConnection, close_month: str) -> list[LedgerInvoice]:
    """Every ledger invoice of close month `close_month`, by number, with its lines in order."""
    BillingMonth.parse(close_month)
    ensure_ledger_schema(con)
    lines: dict[str, list[LedgerLine]] = {}
    for invoice_id, *fields in con.execute(_LINES_SQL, [close_month]).fetchall():
        lines.setdefault(invoice_id, []).append(LedgerLine(*fields))
    return [
        LedgerInvoice(*row, lines=tuple(lines.get(row[0], ())))
        for row in con.execute(_INVOICES_SQL, [close_month]).fetchall()
    ]
