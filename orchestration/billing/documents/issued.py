"""When each ledger invoice of a month was issued (finalized) and voided, in one query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from orchestration.warehouse.tables import table_exists


@dataclass(frozen=True)
class Issued:
    finalized_at: datetime  # naive UTC
    voided_at: datetime | None


def issued_moments(con: duckdb.DuckDBPyConnection, close_month: str) -> dict[str, Issued]:
    """Invoice id -> its moments; empty when there is no ledger (it is not created here)."""
    if not table_exists(con, "meterbook_ledger", "invoices"):
        return {}
    rows = con.execute(
        """
        SELECT i.invoice_id, timezone('UTC', i.finalized_at),
               timezone('UTC', min(c.changed_at) FILTER (WHERE c.status = 'void'))
        FROM meterbook_ledger.invoices AS i
        LEFT JOIN meterbook_ledger.invoice_status_changes AS c USING (invoice_id)
        WHERE i.close_month = ?
        GROUP BY ALL
        """,
        [close_month],
    ).fetchall()
    return {invoice_id: Issued(finalized, voided) for invoice_id, finalized, voided in rows}
