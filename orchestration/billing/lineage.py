"""Lineage and reconciliation: every usage line traced to its events, every total re-added.

Each `check_*` function returns `(passed, metadata)` so the lead can wrap it as a Dagster
asset check without logic of its own. The invoice arithmetic (`invoice_problems`) is a pure
function over a SPEC 5 invoice; finalization refuses an invoice it finds a problem in.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import duckdb

from orchestration.billing.ledger import invoices_with_ledger
from orchestration.billing.money import minor_exponent, round_money
from orchestration.catalog.models import Catalog
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.tables import table_exists

AMOUNT_FIELDS = (
    "subtotal",
    "discount_total",
    "tax_total",
    "total",
    "credits_applied",
    "amount_due",
)


def invoice_problems(invoice: dict[str, Any], tax_rate: Decimal | None = None) -> list[str]:
    """What does not add up on one SPEC 5 invoice; empty when it reconciles.

    SPEC 3.4: subtotal = sum of all lines (discount lines included, so after discounts);
    discount_total = minus the sum of the discount lines; total = subtotal + tax;
    amount_due = total - credits_applied; every amount has the currency's minor digits.
    With `tax_rate`, tax must also be the subtotal times the rate, rounded once.
    """
    currency = invoice.get("currency", "")
    problems = _digit_problems(invoice, minor_exponent(currency))
    if problems:
        return problems
    amount = {name: Decimal(invoice[name]) for name in AMOUNT_FIELDS}
    lines = invoice.get("lines", [])
    line_sum = sum((Decimal(line["amount"]) for line in lines), Decimal(0))
    discounts = -sum(
        (Decimal(line["amount"]) for line in lines if line["kind"] == "discount"), Decimal(0)
    )
    expected = {
        "subtotal": line_sum,
        "discount_total": discounts,
        "total": amount["subtotal"] + amount["tax_total"],
        "amount_due": amount["total"] - amount["credits_applied"],
    }
    if tax_rate is not None:
        expected["tax_total"] = round_money(amount["subtotal"] * tax_rate, currency)
    for name, value in expected.items():
        if amount[name] != value:
            problems.append(f"{name} is {invoice[name]} but should be {value}")
    return problems


def _digit_problems(invoice: dict[str, Any], exponent: int) -> list[str]:
    problems = []
    for name in AMOUNT_FIELDS:
        if not _has_digits(invoice.get(name), exponent):
            problems.append(f"{name} {invoice.get(name)!r} does not have {exponent} decimals")
    for position, line in enumerate(invoice.get("lines", [])):
        if not _has_digits(line.get("amount"), exponent):
            problems.append(
                f"line {position} ({line.get('line_id')}) amount {line.get('amount')!r} "
                f"does not have {exponent} decimals"
            )
    return problems


def _has_digits(text: Any, exponent: int) -> bool:
    if not isinstance(text, str):
        return False
    try:
        value = Decimal(text)
    except ArithmeticError:
        return False
    return value.is_finite() and -value.as_tuple().exponent == exponent and "e" not in text.lower()


def check_invoice_totals(
    document: dict[str, Any], tax_rates: dict[str, Decimal] | None = None
) -> tuple[bool, dict[str, Any]]:
    """Asset check: every invoice of a SPEC 5 document adds up (lines, discounts, tax, due).

    `tax_rates` maps customer_id to its rate; given, tax is re-computed too.
    """
    failures = {}
    for invoice in document.get("invoices", []):
        rate = (tax_rates or {}).get(invoice["customer_id"])
        problems = invoice_problems(invoice, rate)
        if problems:
            failures[invoice["invoice_id"]] = problems
    metadata = {
        "period": document.get("period"),
        "invoices": len(document.get("invoices", [])),
        "invoices_failing": len(failures),
        "failures": dict(sorted(failures.items())[:20]),
    }
    return not failures, metadata


def check_invoices(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, period: str
) -> tuple[bool, dict[str, Any]]:
    """Asset check over `invoices_with_ledger`: drafts are also re-taxed at the catalog rate
    (a finalized invoice keeps the rate it was issued with, so only its arithmetic is checked)."""
    document = invoices_with_ledger(con, period)
    rates = {c.id: c.tax_rate for c in catalog.customers}
    failures = {}
    for invoice in document["invoices"]:
        rate = rates.get(invoice["customer_id"]) if invoice["status"] == "draft" else None
        problems = invoice_problems(invoice, rate)
        if problems:
            failures[invoice["invoice_id"]] = problems
    return not failures, {
        "period": period,
        "invoices": len(document["invoices"]),
        "invoices_failing": len(failures),
        "failures": dict(sorted(failures.items())[:20]),
    }


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
        FROM marts.fct_usage_line_events AS e
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
    FROM marts.fct_invoice_lines
    WHERE close_month = $month AND kind = 'usage'
),
expected AS (
    SELECT DISTINCT e.meter_code, e.customer_id AS event_customer_id, e.event_id
    FROM windows
    JOIN charged USING (invoice_id)
    JOIN intermediate.int_events_metered AS e
      ON e.billing_customer_id = windows.billing_customer_id
     AND e.meter_code = charged.meter
     AND e.event_ts >= windows.window_start AND e.event_ts < windows.window_end
),
traced AS (
    SELECT meter_code, event_customer_id, event_id, count(DISTINCT line_id) AS lines
    FROM marts.fct_usage_line_events
    WHERE close_month = $month
    GROUP BY ALL
)
"""


def check_events_in_one_line(
    con: duckdb.DuckDBPyConnection, period: str
) -> tuple[bool, dict[str, Any]]:
    """Asset check: every billable event of the month's windows, for every meter its invoice
    charges, is in exactly one usage line; and each line's event_count is its traced events."""
    month = {"month": period}
    counts = con.execute(
        f"""
        WITH {_WINDOWS}
        SELECT
            (SELECT count(*) FROM expected),
            (SELECT count(*) FROM traced),
            (SELECT count(*) FROM (SELECT * FROM expected EXCEPT
                                   SELECT meter_code, event_customer_id, event_id FROM traced)),
            (SELECT count(*) FROM (SELECT meter_code, event_customer_id, event_id FROM traced
                                   EXCEPT SELECT * FROM expected)),
            (SELECT count(*) FROM traced WHERE lines > 1)
        """,
        month,
    ).fetchone()
    expected, traced, missing, unexpected, in_several = counts
    samples = _missing_samples(con, month) if missing else []
    mismatched = _event_count_mismatches(con, period)
    passed = missing == 0 and unexpected == 0 and in_several == 0 and not mismatched
    return passed, {
        "period": period,
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
        f"""
        WITH {_WINDOWS}
        SELECT * FROM (SELECT * FROM expected EXCEPT
                       SELECT meter_code, event_customer_id, event_id FROM traced)
        ORDER BY ALL LIMIT 10
        """,
        month,
    ).fetchall()
    return [f"{meter}: {customer}/{event}" for meter, customer, event in rows]


def _event_count_mismatches(con, period: str) -> list[str]:
    rows = con.execute(
        """
        WITH traced AS (
            SELECT line_id, count(*) AS events
            FROM marts.fct_usage_line_events WHERE close_month = ? GROUP BY line_id
        )
        SELECT l.line_id, l.event_count, coalesce(t.events, 0)
        FROM marts.fct_invoice_lines AS l LEFT JOIN traced AS t USING (line_id)
        WHERE l.close_month = ? AND l.kind = 'usage'
          AND coalesce(l.event_count, 0) <> coalesce(t.events, 0)
        ORDER BY l.line_id
        """,
        [period, period],
    ).fetchall()
    return [f"{line}: event_count {count} but {events} traced" for line, count, events in rows]


def check_meter_totals(con: duckdb.DuckDBPyConnection, period: str) -> tuple[bool, dict[str, Any]]:
    """Asset check: each usage line carries its window's metered quantity and event count
    (fct_period_meter_quantities), and no metered quantity of a charged meter is left out."""
    rows = con.execute(
        """
        WITH lines AS (
            SELECT l.line_id, l.invoice_id, l.meter, l.group_key, l.quantity, l.event_count,
                   s.window_id
            FROM marts.fct_invoice_lines AS l
            LEFT JOIN meterbook_billing.segments AS s
              ON s.close_month = l.close_month AND s.invoice_id = l.invoice_id
             AND s.period_role = 'current'
             AND s.segment_start = l.period_start AND s.segment_end = l.period_end
            WHERE l.close_month = $month AND l.kind = 'usage'
        ),
        quantities AS (
            SELECT q.*, s.invoice_id
            FROM marts.fct_period_meter_quantities AS q
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
        """,
        {"month": period},
    ).fetchall()
    problems = [_quantity_problem(row) for row in rows]
    problems = [p for p in problems if p]
    return not problems, {
        "period": period,
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
