"""Lineage on demand: which billable events made a usage line (`meterbook invoices --line
LINE_ID --events`, and the documents name that command beside each usage line).

Nothing per event is stored by the close. A usage line is rated from one metering window
(its segment) x meter x group, so its events are found again by a query over the stored
events: the billable events of the window's billing customer, counted by the line's meter,
with the line's group, timestamped in [window_start, window_end). For a line frozen in the
ledger only the events ingested before its finalization count, so a late event never changes
what a finalized line says it was made of.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import duckdb

from orchestration.warehouse.models import relation, with_refs
from orchestration.warehouse.tables import table_exists

# every usage line of a close month with the metering window it was rated from: the line
# covers exactly its segment's dates, which name the window
LINE_WINDOWS = """
SELECT l.close_month, l.invoice_id, l.line_id, l.meter, l.group_key, l.event_count,
       w.window_id, w.billing_customer_id, w.window_start, w.window_end
FROM {{ ref('fct_invoice_lines') }} AS l
JOIN meterbook_billing.segments AS s
  ON s.close_month = l.close_month AND s.invoice_id = l.invoice_id
 AND s.period_role = 'current'
 AND s.segment_start = l.period_start AND s.segment_end = l.period_end
JOIN meterbook_billing.meter_windows AS w
  ON w.close_month = s.close_month AND w.window_id = s.window_id
WHERE l.kind = 'usage'
"""


def line_events(con: duckdb.DuckDBPyConnection, line_id: str) -> list[dict[str, Any]]:
    """The billable events counted in usage line `line_id`, oldest first.

    Each is {customer_id, event_id, event_ts, read_seq, path, line_no}: the event key and
    where it was read (path and line_no are None when the raw table is not there). For a
    line frozen in the ledger, only events ingested before its finalization are listed.
    An unknown line, or a line that is not usage, has none.
    """
    line = con.execute(
        with_refs(f"SELECT * FROM ({LINE_WINDOWS}) WHERE line_id = ? LIMIT 1"), [line_id]
    ).fetchone()
    if line is None:
        return []
    _, _, _, meter, group_key, _, _, customer, start, end = line
    raw = table_exists(con, "meterbook_raw", "raw_events")
    where_read = "r.path, r.line_no" if raw else "NULL, NULL"
    join_raw = "LEFT JOIN meterbook_raw.raw_events AS r ON r.read_seq = e.read_seq" if raw else ""
    first, last = event_dates(start, end)
    rows = con.execute(
        f"""
        SELECT e.customer_id, e.event_id, e.event_ts, e.read_seq, {where_read}
        FROM {relation("int_events_metered")} AS e
        {join_raw}
        WHERE e.billing_customer_id = ? AND e.meter_code = ?
          AND e.event_ts >= ? AND e.event_ts < ?
          AND e.event_date BETWEEN ? AND ?
          AND cast(e.group_key AS VARCHAR) IS NOT DISTINCT FROM cast(? AS VARCHAR)
          AND e.read_seq <= ?
        ORDER BY e.event_ts, e.customer_id, e.event_id
        """,
        [customer, meter, start, end, first, last, group_key, _frozen_watermark(con, line_id)],
    ).fetchall()  # the two fragments above are constants chosen by a flag, never input
    names = ("customer_id", "event_id", "event_ts", "read_seq", "path", "line_no")
    return [dict(zip(names, row, strict=True)) for row in rows]


def event_dates(start: datetime, end: datetime) -> tuple[date, date]:
    """The UTC days (event_date) of the instants in [start, end): a bound on the fates,
    stored in read order, that lets a query skip the other months' rows."""
    return _utc_date(start), _utc_date(end)


def _utc_date(instant: datetime) -> date:
    return instant.astimezone(UTC).date()


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
