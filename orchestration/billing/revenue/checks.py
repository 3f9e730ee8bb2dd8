"""The invariants of revenue recognition (SPEC 8), each computed a second way from the
schedule and billings and compared with what the marts say. Each check returns
(passed, metadata) with the first problems found; the revenue job runs them as asset checks.

- every line's schedule sums to its amount; its reversals to minus what its credit notes
  credited (each note's rows to minus what that note credited), or minus its amount once its
  invoice is voided;
- per line at the month's end: recognized + drawn + deferred - unbilled = billed - credited,
  and per customer those lines' deferred and unbilled are the roll-forward's closing balances;
- every journal day balances per currency, and the journal moves the deferred and unbilled
  accounts by exactly what the roll-forward says;
- deferred revenue is never negative, and is zero for a customer with no service day ahead
  and no paid credits left.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import duckdb

from orchestration.billing.month import BillingMonth
from orchestration.warehouse.models import relation

SHOWN = 20


def _rel(name: str) -> str:
    return relation(name)


def _problems(con, sql: str, params: list) -> list[dict[str, Any]]:
    cursor = con.execute(sql, params)
    names = [d[0] for d in cursor.description]
    return [
        {k: (str(v) if v is not None else None) for k, v in zip(names, row, strict=True)}
        for row in cursor.fetchall()
    ]


def _result(problems: list[dict[str, Any]], **extra: Any) -> tuple[bool, dict[str, Any]]:
    return (not problems, {"problems": len(problems), "first": problems[:SHOWN], **extra})


def check_schedule_sums(con: duckdb.DuckDBPyConnection) -> tuple[bool, dict[str, Any]]:
    """Each finalized line's schedule adds up to its amount to the cent, and its reversals to
    minus what its credit notes credited (each note's own rows too), or to minus its amount
    once its invoice is voided; paid credits bought never leave deferred revenue for more
    than was bought."""
    problems = _problems(
        con,
        f"""
        WITH lines AS (  -- from the ledger itself: a line revenue lost is a problem here
            SELECT l.line_id, l.kind, l.amount, v.invoice_id IS NOT NULL AS voided
            FROM meterbook_ledger.invoice_lines l
            LEFT JOIN (SELECT DISTINCT invoice_id FROM meterbook_ledger.invoice_status_changes
                       WHERE status = 'void') v USING (invoice_id)
        ),
        credited AS (
            SELECT line_id, credit_note_id, amount FROM meterbook_ledger.credit_note_lines
        ),
        sums AS (
            SELECT line_id, reversal, coalesce(credit_note_id, '') AS credit_note_id,
                   sum(amount) AS scheduled
            FROM {_rel("fct_revenue_schedule")} GROUP BY ALL
        ),
        expected AS (
            SELECT line_id, kind, false AS reversal, '' AS credit_note_id, amount FROM lines
            UNION ALL  -- a void: what the line still stood for after its credit notes
            SELECT l.line_id, l.kind, true, '', -(l.amount - coalesce(c.amount, 0))
            FROM lines l
            LEFT JOIN (SELECT line_id, sum(amount) AS amount FROM credited GROUP BY ALL) c
                USING (line_id)
            WHERE l.voided AND l.kind <> 'credit_purchase'
            UNION ALL
            SELECT c.line_id, coalesce(l.kind, '(no such line)'), true, c.credit_note_id, -c.amount
            FROM credited c LEFT JOIN lines l USING (line_id)
        ),
        compared AS (
            SELECT line_id, e.kind, reversal, nullif(credit_note_id, '') AS credit_note_id,
                   coalesce(e.amount, 0) AS amount, coalesce(s.scheduled, 0) AS scheduled
            FROM expected e FULL JOIN sums s USING (line_id, reversal, credit_note_id)
        )
        SELECT * FROM compared
        WHERE CASE WHEN kind = 'credit_purchase' AND NOT reversal
                   THEN scheduled > amount OR scheduled < 0
                   ELSE scheduled <> amount END
        ORDER BY line_id, reversal, credit_note_id NULLS FIRST
        """,
        [],
    )
    lines = con.execute("SELECT count(*) FROM meterbook_ledger.invoice_lines").fetchone()[0]
    rows = con.execute(f"SELECT count(*) FROM {_rel('fct_revenue_schedule')}").fetchone()[0]
    return _result(problems, lines=lines, schedule_rows=rows)


def _line_positions() -> str:
    """Per line at the month's last day: billed (its invoice, less a void), credited (by its
    credit notes), recognized (revenue and breakage), drawn (paid credits leaving), deferred
    and unbilled, each from the rows."""
    return f"""
        WITH t AS (SELECT cast(? AS DATE) AS last_day),
        billed AS (
            SELECT line_id, any_value(customer_id) AS customer_id,
                   any_value(currency) AS currency, any_value(line_kind) AS line_kind,
                   sum(amount) FILTER (WHERE credit_note_id IS NULL
                                         AND billed_on <= (SELECT last_day FROM t)) AS billed,
                   -sum(amount) FILTER (WHERE credit_note_id IS NOT NULL
                                          AND billed_on <= (SELECT last_day FROM t)) AS credited
            FROM {_rel("fct_revenue_billings")} GROUP BY ALL
        ),
        rows_ AS (
            SELECT line_id,
                   sum(amount) FILTER (WHERE row_type IN ('revenue', 'breakage')
                                         AND revenue_date <= (SELECT last_day FROM t)) AS recognized,
                   sum(amount) FILTER (WHERE row_type IN ('drawn', 'voided')
                                         AND revenue_date <= (SELECT last_day FROM t)) AS drawn,
                   sum(amount) FILTER (WHERE row_type = 'revenue' AND billed_on <= (SELECT last_day FROM t)
                                         AND revenue_date > (SELECT last_day FROM t)) AS ahead,
                   sum(amount) FILTER (WHERE row_type IN ('revenue', 'breakage')
                                         AND revenue_date <= (SELECT last_day FROM t)
                                         AND billed_on > (SELECT last_day FROM t)) AS unbilled
            FROM {_rel("fct_revenue_schedule")} GROUP BY ALL
        )
        SELECT b.line_id, b.customer_id, b.currency, b.line_kind,
               coalesce(b.billed, 0) AS billed,
               coalesce(b.credited, 0) AS credited,
               coalesce(r.recognized, 0) AS recognized,
               coalesce(r.drawn, 0) AS drawn,
               CASE WHEN b.line_kind = 'credit_purchase'
                    -- breakage before the sale is billed is unbilled, not out of deferred
                    THEN coalesce(b.billed, 0) - coalesce(r.recognized, 0) - coalesce(r.drawn, 0)
                         + coalesce(r.unbilled, 0)
                    ELSE coalesce(r.ahead, 0) END AS deferred,
               coalesce(r.unbilled, 0) AS unbilled
        FROM billed b LEFT JOIN rows_ r USING (line_id)
    """


def check_balances(con: duckdb.DuckDBPyConnection, month: str) -> tuple[bool, dict[str, Any]]:
    """recognized to date + deferred = billed - credited for every line (less what it
    recognized before it was billed, which is unbilled), and the lines' balances add up to
    the roll-forward's closing balances per customer and currency."""
    day = BillingMonth.parse(month).end - timedelta(days=1)
    positions = _line_positions()
    problems = _problems(
        con,
        f"""
        SELECT * FROM ({positions}) p
        WHERE recognized + drawn + deferred - unbilled <> billed - credited
        ORDER BY line_id
        """,
        [day],
    )
    mismatched = _problems(
        con,
        f"""
        WITH lines AS ({positions}),
        per_customer AS (
            SELECT customer_id, currency, sum(deferred) AS deferred, sum(unbilled) AS unbilled
            FROM lines GROUP BY ALL
        ),
        rf AS (
            SELECT customer_id, currency, deferred_closing, unbilled_closing
            FROM {_rel("fct_revenue_rollforward")} WHERE revenue_month = ?
        )
        SELECT coalesce(p.customer_id, r.customer_id) AS customer_id,
               coalesce(p.currency, r.currency) AS currency,
               coalesce(p.deferred, 0) AS lines_deferred, coalesce(r.deferred_closing, 0) AS deferred_closing,
               coalesce(p.unbilled, 0) AS lines_unbilled, coalesce(r.unbilled_closing, 0) AS unbilled_closing
        FROM per_customer p FULL JOIN rf r USING (customer_id, currency)
        WHERE coalesce(p.deferred, 0) <> coalesce(r.deferred_closing, 0)
           OR coalesce(p.unbilled, 0) <> coalesce(r.unbilled_closing, 0)
        ORDER BY 1, 2
        """,
        [day, month],
    )
    return _result(problems + mismatched, lines_off=len(problems), customers_off=len(mismatched))


def check_journal(con: duckdb.DuckDBPyConnection, month: str) -> tuple[bool, dict[str, Any]]:
    """Debits = credits per day, currency and entry; and over the month the journal moves
    deferred and unbilled revenue by the roll-forward's change, revenue by what was recognized."""
    journal = _rel("fct_revenue_journal")
    unbalanced = _problems(
        con,
        f"""
        SELECT entry_date, currency, entry, sum(debit) AS debits, sum(credit) AS credits
        FROM {journal} WHERE revenue_month = ?
        GROUP BY ALL HAVING sum(debit) <> sum(credit) ORDER BY ALL
        """,
        [month],
    )
    disagree = _problems(
        con,
        f"""
        WITH j AS (
            SELECT currency,
                   sum(credit - debit) FILTER (WHERE account_role = 'deferred_revenue') AS deferred,
                   sum(debit - credit) FILTER (WHERE account_role = 'unbilled') AS unbilled,
                   sum(credit - debit) FILTER (WHERE account_role IN ('revenue_usage', 'revenue_fees', 'breakage')) AS recognized
            FROM {journal} WHERE revenue_month = ? GROUP BY ALL
        ),
        r AS (
            SELECT currency,
                   sum(deferred_closing - deferred_opening) AS deferred,
                   sum(unbilled_closing - unbilled_opening) AS unbilled,
                   sum(recognized) AS recognized
            FROM {_rel("fct_revenue_rollforward")} WHERE revenue_month = ? GROUP BY ALL
        )
        SELECT coalesce(j.currency, r.currency) AS currency,
               coalesce(j.deferred, 0) AS journal_deferred, coalesce(r.deferred, 0) AS rollforward_deferred,
               coalesce(j.unbilled, 0) AS journal_unbilled, coalesce(r.unbilled, 0) AS rollforward_unbilled,
               coalesce(j.recognized, 0) AS journal_recognized, coalesce(r.recognized, 0) AS rollforward_recognized
        FROM j FULL JOIN r USING (currency)
        WHERE coalesce(j.deferred, 0) <> coalesce(r.deferred, 0)
           OR coalesce(j.unbilled, 0) <> coalesce(r.unbilled, 0)
           OR coalesce(j.recognized, 0) <> coalesce(r.recognized, 0)
        ORDER BY 1
        """,
        [month, month],
    )
    lines = con.execute(f"SELECT count(*) FROM {journal} WHERE revenue_month = ?", [month])
    return _result(unbalanced + disagree, journal_lines=lines.fetchone()[0])


def check_deferred(con: duckdb.DuckDBPyConnection, month: str) -> tuple[bool, dict[str, Any]]:
    """No customer's deferred revenue below zero at the month's end; and none left when the
    customer has no service day after it and no paid credits left in its wallet."""
    end = BillingMonth.parse(month).end
    problems = _problems(
        con,
        f"""
        WITH rf AS (
            SELECT customer_id, currency, deferred_closing
            FROM {_rel("fct_revenue_rollforward")} WHERE revenue_month = ?
        ),
        ahead AS (
            SELECT DISTINCT customer_id, currency FROM {_rel("fct_revenue_schedule")}
            WHERE row_type = 'revenue' AND revenue_date >= ?
        ),
        paid_left AS (
            SELECT customer_id, currency FROM meterbook_ledger.wallet_entries
            WHERE grant_kind = 'paid' AND entry_date < ?
            GROUP BY ALL HAVING sum(amount) <> 0
        )
        SELECT rf.customer_id, rf.currency, rf.deferred_closing,
               CASE WHEN rf.deferred_closing < 0 THEN 'negative' ELSE 'left with nothing ahead' END AS problem
        FROM rf
        WHERE rf.deferred_closing < 0
           OR (rf.deferred_closing <> 0
               AND NOT EXISTS (SELECT 1 FROM ahead a WHERE a.customer_id = rf.customer_id AND a.currency = rf.currency)
               AND NOT EXISTS (SELECT 1 FROM paid_left p WHERE p.customer_id = rf.customer_id AND p.currency = rf.currency))
        ORDER BY 1, 2
        """,
        [month, end, end],
    )
    return _result(problems)
