"""Reconciliation of a close, over the warehouse: every billable event of the month's windows
in exactly one usage line, every line's quantity equal to its meter's, and the ledger's
numbers gapless with every frozen document agreeing with its rows.

Each `check_*` function returns `(passed, metadata)` so defs/close/checks.py can wrap it as
a Dagster asset check without logic of its own.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import duckdb

from orchestration.billing.invoice_checks import invoice_problems
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.models import with_refs

# The month's windows with the invoice they belong to, and the meters each invoice charges.
_WINDOWS = """
windows AS (
    SELECT w.window_id, w.billing_customer_id, w.window_start, w.window_end, s.invoice_id
    FROM meterbook_billing.meter_windows AS w
    JOIN meterbook_billing.segments AS s
      ON s.close_month = w.close_month AND s.window_id = w.window_id
     AND s.period_role = 'current'
    WHERE w.close_month = $month
),
charged AS (
    SELECT DISTINCT invoice_id, meter
    FROM {{ ref('fct_invoice_lines') }}
    WHERE close_month = $month AND kind = 'usage'
),
expected AS (
    SELECT DISTINCT e.meter_code, e.customer_id AS event_customer_id, e.event_id
    FROM windows
    JOIN charged USING (invoice_id)
    JOIN {{ ref('int_events_metered') }} AS e
      ON e.billing_customer_id = windows.billing_customer_id
     AND e.meter_code = charged.meter
     AND e.event_ts >= windows.window_start AND e.event_ts < windows.window_end
),
traced AS (
    SELECT meter_code, event_customer_id, event_id, count(DISTINCT line_id) AS lines
    FROM {{ ref('fct_usage_line_events') }}
    WHERE close_month = $month
    GROUP BY ALL
)
"""


def check_events_in_one_line(
    con: duckdb.DuckDBPyConnection, close_month: str
) -> tuple[bool, dict[str, Any]]:
    """Asset check: every billable event of the month's windows, for every meter its invoice
    charges, is in exactly one usage line; and each line's event_count is its traced events."""
    month = {"month": close_month}
    counts = con.execute(
        with_refs(f"""
        WITH {_WINDOWS}
        SELECT
            (SELECT count(*) FROM expected),
            (SELECT count(*) FROM traced),
            (SELECT count(*) FROM (SELECT * FROM expected EXCEPT
                                   SELECT meter_code, event_customer_id, event_id FROM traced)),
            (SELECT count(*) FROM (SELECT meter_code, event_customer_id, event_id FROM traced
                                   EXCEPT SELECT * FROM expected)),
            (SELECT count(*) FROM traced WHERE lines > 1)
        """),
        month,
    ).fetchone()
    expected, traced, missing, unexpected, in_several = counts
    samples = _missing_samples(con, month) if missing else []
    mismatched = _event_count_mismatches(con, close_month)
    passed = missing == 0 and unexpected == 0 and in_several == 0 and not mismatched
    return passed, {
        "period": close_month,
        "billable_event_meters": expected,
        "traced_event_meters": traced,
        "missing_from_lines": missing,
        "traced_but_not_billable": unexpected,
        "in_several_lines": in_several,
        "missing_samples": samples,
        "event_count_mismatches": mismatched[:20],
    }


def _missing_samples(con, month: dict[str, str]) -> list[str]:
    rows = con.execute(
        with_refs(f"""
        WITH {_WINDOWS}
        SELECT * FROM (SELECT * FROM expected EXCEPT
                       SELECT meter_code, event_customer_id, event_id FROM traced)
        ORDER BY ALL LIMIT 10
        """),
        month,
    ).fetchall()
    return [f"{meter}: {customer}/{event}" for meter, customer, event in rows]


def _event_count_mismatches(con, close_month: str) -> list[str]:
    rows = con.execute(
        with_refs("""
        WITH traced AS (
            SELECT line_id, count(*) AS events
            FROM {{ ref('fct_usage_line_events') }} WHERE close_month = ? GROUP BY line_id
        )
        SELECT l.line_id, l.event_count, coalesce(t.events, 0)
        FROM {{ ref('fct_invoice_lines') }} AS l LEFT JOIN traced AS t USING (line_id)
        WHERE l.close_month = ? AND l.kind = 'usage'
          AND coalesce(l.event_count, 0) <> coalesce(t.events, 0)
        ORDER BY l.line_id
        """),
        [close_month, close_month],
    ).fetchall()
    return [f"{line}: event_count {count} but {events} traced" for line, count, events in rows]


def check_meter_totals(
    con: duckdb.DuckDBPyConnection, close_month: str
) -> tuple[bool, dict[str, Any]]:
    """Asset check: each usage line carries its window's metered quantity and event count
    (fct_period_meter_quantities), and no metered quantity of a charged meter is left out."""
    rows = con.execute(
        with_refs("""
        WITH lines AS (
            SELECT l.line_id, l.invoice_id, l.meter, l.group_key, l.quantity, l.event_count,
                   s.window_id
            FROM {{ ref('fct_invoice_lines') }} AS l
            LEFT JOIN meterbook_billing.segments AS s
              ON s.close_month = l.close_month AND s.invoice_id = l.invoice_id
             AND s.period_role = 'current'
             AND s.segment_start = l.period_start AND s.segment_end = l.period_end
            WHERE l.close_month = $month AND l.kind = 'usage'
        ),
        quantities AS (
            SELECT q.*, s.invoice_id
            FROM {{ ref('fct_period_meter_quantities') }} AS q
            JOIN meterbook_billing.segments AS s
              ON s.close_month = q.close_month AND s.window_id = q.window_id
             AND s.period_role = 'current'
            JOIN (SELECT DISTINCT invoice_id, meter FROM lines) AS charged
              ON charged.invoice_id = s.invoice_id AND charged.meter = q.meter_code
            WHERE q.close_month = $month
        )
        SELECT coalesce(lines.line_id, '(no line)'),
               coalesce(lines.window_id, quantities.window_id),
               coalesce(lines.meter, quantities.meter_code),
               cast(coalesce(lines.group_key, quantities.group_key) AS VARCHAR),
               lines.quantity, quantities.quantity, lines.event_count, quantities.event_count
        FROM lines
        FULL JOIN quantities
          ON quantities.window_id = lines.window_id
         AND quantities.meter_code = lines.meter
         AND cast(quantities.group_key AS VARCHAR) IS NOT DISTINCT FROM cast(lines.group_key AS VARCHAR)
        ORDER BY ALL
        """),
        {"month": close_month},
    ).fetchall()
    problems = [_quantity_problem(row) for row in rows]
    problems = [p for p in problems if p]
    return not problems, {
        "period": close_month,
        "usage_lines": sum(1 for row in rows if row[0] != "(no line)"),
        "mismatches": len(problems),
        "samples": problems[:20],
    }


def _quantity_problem(row: tuple) -> str | None:
    line_id, window, meter, group, line_q, meter_q, line_n, meter_n = row
    where = f"{line_id} ({meter} {group or ''} in {window})"
    if window is None:
        return f"{where}: no metering window has the line's dates"
    if meter_q is None:
        return f"{where}: no metered quantity"
    if line_q is None:
        return f"{where}: metered {meter_q} ({meter_n} events) but no usage line"
    if line_q != meter_q or (line_n or 0) != (meter_n or 0):
        return f"{where}: line {line_q} ({line_n} events), metered {meter_q} ({meter_n} events)"
    return None


def check_ledger(con: duckdb.DuckDBPyConnection) -> tuple[bool, dict[str, Any]]:
    """Asset check on the ledger: gapless numbers, one 'finalized' row per invoice, and every
    frozen document agreeing with its invoice row and its lines."""
    ensure_ledger_schema(con)
    gaps = con.execute(
        """
        SELECT number_prefix, number_year, count(*), max(number_seq)
        FROM meterbook_ledger.invoice_numbers GROUP BY ALL
        HAVING count(*) <> max(number_seq) ORDER BY ALL
        """
    ).fetchall()
    unstatused = con.execute(
        """
        SELECT i.invoice_id FROM meterbook_ledger.invoices AS i
        WHERE (SELECT count(*) FROM meterbook_ledger.invoice_status_changes AS s
               WHERE s.invoice_id = i.invoice_id AND s.status = 'finalized') <> 1
        ORDER BY 1
        """
    ).fetchall()
    disagreeing = _document_disagreements(con)
    passed = not gaps and not unstatused and not disagreeing
    return passed, {
        "sequences_with_gaps": [f"{p}-{y}: {n} numbers up to {m}" for p, y, n, m in gaps],
        "invoices_without_one_finalized_status": [r[0] for r in unstatused][:20],
        "documents_disagreeing": disagreeing[:20],
    }


def _document_disagreements(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        """
        SELECT i.invoice_id, i.document, i.total, i.amount_due,
               (SELECT coalesce(sum(l.amount), 0) FROM meterbook_ledger.invoice_lines AS l
                WHERE l.invoice_id = i.invoice_id),
               (SELECT count(*) FROM meterbook_ledger.invoice_lines AS l
                WHERE l.invoice_id = i.invoice_id),
               i.subtotal
        FROM meterbook_ledger.invoices AS i ORDER BY i.invoice_id
        """
    ).fetchall()
    out = []
    for invoice_id, text, total, due, line_sum, line_count, subtotal in rows:
        document = json.loads(text)
        problems = invoice_problems(document)
        if Decimal(document["total"]) != total or Decimal(document["amount_due"]) != due:
            problems.append("document totals differ from the invoice row")
        if line_sum != subtotal or line_count != len(document["lines"]):
            problems.append("the frozen lines do not add up to the subtotal")
        if problems:
            out.append(f"{invoice_id}: {'; '.join(problems)}")
    return out
