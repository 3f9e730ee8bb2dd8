"""Reconciliation of a close, over the warehouse: every billable event of the month's windows
in exactly one usage line (proven from aggregates: no row per event is stored), every line's quantity equal to its meter's, and the ledger's
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
from orchestration.billing.lineage import LINE_WINDOWS, event_dates
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.models import with_refs

# Per invoice x window x meter x group of the month: the billable events of every meter the
# invoice charges, aggregated from the stored events, beside the usage lines of that key.
_EVENTS_AND_LINES = f"""
WITH lines AS ({LINE_WINDOWS} AND l.close_month = $month),
windows AS (
    SELECT w.window_id, w.billing_customer_id, w.window_start, w.window_end, s.invoice_id
    FROM meterbook_billing.meter_windows AS w
    JOIN meterbook_billing.segments AS s
      ON s.close_month = w.close_month AND s.window_id = w.window_id
     AND s.period_role = 'current'
    WHERE w.close_month = $month
),
charged AS (SELECT DISTINCT invoice_id, meter FROM lines),
billable AS (
    SELECT windows.invoice_id, windows.window_id, e.meter_code,
           coalesce(cast(e.group_key AS VARCHAR), '') AS group_key,
           count(*) AS events,
           sum(e.value) AS value_sum
    FROM windows
    JOIN charged USING (invoice_id)
    JOIN {{{{ ref('int_events_metered') }}}} AS e
      ON e.billing_customer_id = windows.billing_customer_id
     AND e.meter_code = charged.meter
     AND e.event_ts >= windows.window_start AND e.event_ts < windows.window_end
    WHERE e.event_date BETWEEN $first AND $last
    GROUP BY ALL
),
lined AS (
    SELECT invoice_id, window_id, meter AS meter_code,
           coalesce(cast(group_key AS VARCHAR), '') AS group_key,
           count(*) AS lines, sum(coalesce(event_count, 0)) AS events
    FROM lines GROUP BY ALL
)
SELECT invoice_id, window_id, meter_code, group_key,
       coalesce(billable.events, 0), billable.value_sum,
       coalesce(lined.lines, 0), coalesce(lined.events, 0)
FROM billable FULL JOIN lined USING (invoice_id, window_id, meter_code, group_key)
ORDER BY ALL
"""


def check_events_in_one_line(
    con: duckdb.DuckDBPyConnection, close_month: str
) -> tuple[bool, dict[str, Any]]:
    """Asset check, from aggregates: per invoice x window x meter x group, the billable events
    of every meter the invoice charges are counted in exactly one usage line, whose
    event_count is their number. A line's events are those of its key, and no event key is
    billable twice (the fates' check no_key_billed_twice), so each billable event is then in
    exactly one line. (A distinct count of the keys here cost 145 s of a 30M-event close.)"""
    rows = con.execute(with_refs(_EVENTS_AND_LINES), _month_params(con, close_month)).fetchall()
    missing = in_several = 0
    problems = []
    for invoice, window, meter, group, events, _, lines, lined in rows:
        where = f"{invoice} {window} {meter} {group}".rstrip()
        if events and not lines:
            missing += events
            problems.append(f"{where}: {events} billable events in no usage line")
        elif lines > 1:
            in_several += events
            problems.append(f"{where}: {lines} usage lines for one window, meter and group")
        elif lined != events:
            problems.append(f"{where}: event_count {lined} but {events} billable events")
    return not problems, {
        "period": close_month,
        "billable_events": sum(row[4] for row in rows),
        "events_in_lines": sum(row[7] for row in rows),
        "missing_from_lines": missing,
        "in_several_lines": in_several,
        "value_sums": _value_sums(rows),
        "problems": problems[:20],
    }


def _month_params(con: duckdb.DuckDBPyConnection, close_month: str) -> dict[str, Any]:
    """The month, and the UTC days its windows span (a literal bound on the stored events)."""
    start, end = con.execute(
        "SELECT min(window_start), max(window_end) FROM meterbook_billing.meter_windows "
        "WHERE close_month = ?",
        [close_month],
    ).fetchone()
    first, last = event_dates(start, end) if start is not None else (None, None)
    return {"month": close_month, "first": first, "last": last}


def _value_sums(rows: list[tuple]) -> dict[str, str]:
    """The billable events' values added up per meter (counts have none)."""
    sums: dict[str, Decimal] = {}
    for _, _, meter, _, _, value, _, _ in rows:
        if value is not None:
            sums[meter] = sums.get(meter, Decimal(0)) + value
    return {meter: str(total) for meter, total in sorted(sums.items())}


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
    credit_notes = _credit_note_problems(con)
    passed = not gaps and not unstatused and not disagreeing and not credit_notes
    return passed, {
        "sequences_with_gaps": [f"{p}-{y}: {n} numbers up to {m}" for p, y, n, m in gaps],
        "invoices_without_one_finalized_status": [r[0] for r in unstatused][:20],
        "documents_disagreeing": disagreeing[:20],
        "credit_notes_disagreeing": credit_notes[:20],
    }


# Credit notes add up (their lines to their totals), their numbers have no gaps, and no line
# and no invoice was ever credited more than it billed (SPEC 11).
_CREDIT_NOTE_PROBLEMS = """
WITH notes AS (
    SELECT n.credit_note_id, n.number, n.subtotal, n.tax_total, n.total,
           coalesce(sum(l.amount), 0) AS line_sum, coalesce(sum(l.tax_amount), 0) AS tax_sum
    FROM meterbook_ledger.credit_notes AS n
    LEFT JOIN meterbook_ledger.credit_note_lines AS l USING (credit_note_id)
    GROUP BY ALL
),
lines AS (
    SELECT l.line_id, max(n.number) AS number, sum(l.amount) AS credited,
           any_value(il.amount) AS billed
    FROM meterbook_ledger.credit_note_lines AS l
    JOIN meterbook_ledger.credit_notes AS n USING (credit_note_id)
    JOIN meterbook_ledger.invoice_lines AS il
      ON il.invoice_id = n.invoice_id AND il.line_id = l.line_id
    GROUP BY l.line_id
),
invoices AS (
    SELECT n.invoice_id, any_value(i.number) AS number, sum(n.total) AS credited,
           any_value(i.total) AS billed
    FROM meterbook_ledger.credit_notes AS n
    JOIN meterbook_ledger.invoices AS i USING (invoice_id)
    GROUP BY n.invoice_id
),
numbers AS (
    SELECT number_year, count(*) AS n, max(number_seq) AS top
    FROM meterbook_ledger.credit_note_numbers GROUP BY ALL
)
SELECT number || ': lines ' || line_sum || ' and tax ' || tax_sum || ' do not make '
       || subtotal || ' + ' || tax_total || ' = ' || total
FROM notes
WHERE line_sum <> subtotal OR tax_sum <> tax_total OR subtotal + tax_total <> total
UNION ALL
SELECT 'line ' || line_id || ' credited ' || credited || ' of ' || billed || ' (last ' || number
       || ')'
FROM lines WHERE (billed >= 0 AND credited > billed) OR (billed < 0 AND credited < billed)
UNION ALL
SELECT 'invoice ' || number || ' credited ' || credited || ' of its ' || billed
FROM invoices WHERE credited > billed
UNION ALL
SELECT 'CN-' || number_year || ': ' || n || ' numbers up to ' || top FROM numbers WHERE n <> top
ORDER BY 1
"""


def _credit_note_problems(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [row[0] for row in con.execute(_CREDIT_NOTE_PROBLEMS).fetchall()]


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
