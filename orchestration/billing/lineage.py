"""Lineage: which billable events made a usage line (`meterbook` and the documents ask it).

For a line frozen in the ledger only the events ingested before its finalization count, so a
late event never changes what a finalized line says it was made of.
"""

from __future__ import annotations

from typing import Any

import duckdb

from orchestration.warehouse.models import relation
from orchestration.warehouse.tables import table_exists


def line_events(con: duckdb.DuckDBPyConnection, line_id: str) -> list[dict[str, Any]]:
    """The billable events counted in usage line `line_id`, oldest first.

    Each is {customer_id, event_id, event_ts, read_seq, path, line_no}: the event key and
    where it was read (path and line_no are None when the raw table is not there). For a
    line frozen in the ledger, only events ingested before its finalization are listed.
    """
    raw = table_exists(con, "meterbook_raw", "raw_events")
    where_read = "r.path, r.line_no" if raw else "NULL, NULL"
    join_raw = "LEFT JOIN meterbook_raw.raw_events AS r ON r.read_seq = e.read_seq" if raw else ""
    rows = con.execute(
        f"""
        SELECT e.event_customer_id, e.event_id, e.event_ts, e.read_seq, {where_read}
        FROM {relation("fct_usage_line_events")} AS e
        {join_raw}
        WHERE e.line_id = ? AND e.read_seq <= ?
        ORDER BY e.event_ts, e.event_customer_id, e.event_id
        """,
        [line_id, _frozen_watermark(con, line_id)],
    ).fetchall()  # the two fragments above are constants chosen by a flag, never input
    names = ("customer_id", "event_id", "event_ts", "read_seq", "path", "line_no")
    return [dict(zip(names, row, strict=True)) for row in rows]


def _frozen_watermark(con: duckdb.DuckDBPyConnection, line_id: str) -> int:
    if not table_exists(con, "meterbook_ledger", "period_finalizations"):
        return _NO_LIMIT
    row = con.execute(
        """
        SELECT max(f.raw_read_seq)
        FROM meterbook_ledger.invoice_lines AS l
        JOIN meterbook_ledger.invoices AS i USING (invoice_id)
        JOIN meterbook_ledger.period_finalizations AS f
          ON f.close_month = i.close_month AND f.finalized_at = i.finalized_at
        WHERE l.line_id = ?
        """,
        [line_id],
    ).fetchone()
    return _NO_LIMIT if row is None or row[0] is None else int(row[0])


_NO_LIMIT = 2**62
