"""Reconciliation of the wallets (SPEC 7): no balance ever below zero, and every invoice's
credit lines and paid credits are exactly the draws the ledger holds for it."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import duckdb

from orchestration.billing.wallets.ledger import balance_problems, ledger_entries
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.models import model_exists, with_refs

ZERO = Decimal(0)


def draw_problems(
    entries: list[dict[str, Any]], credited: dict[str, tuple[str, Decimal, Decimal]]
) -> list[str]:
    """Invoices whose promotional_credit lines or credits_applied differ from their draws.
    `credited`: invoice_id -> (customer, promotional credit lines as a positive sum, paid
    credits applied), for every invoice of the month that shows credits."""
    drawn: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for e in entries:
        if e["entry_type"] == "draw" and e["invoice_id"]:
            drawn[(e["invoice_id"], e["grant_kind"])] -= e["amount"]
    problems = []
    for iid in sorted(credited):
        customer, promotional, paid = credited[iid]
        for kind, billed in (("promotional", promotional), ("paid", paid)):
            if drawn[(iid, kind)] != billed:
                problems.append(
                    f"invoice {iid} ({customer}): {kind} credits {billed} on the "
                    f"invoice but {drawn[(iid, kind)]} drawn in the wallet ledger"
                )
    return problems


_CREDITED = """
WITH drafts AS (
    SELECT i.invoice_id, i.customer_id, i.credits_applied,
           coalesce(-(SELECT sum(l.amount) FROM {{ ref('fct_invoice_lines') }} l
                      WHERE l.close_month = i.close_month AND l.invoice_id = i.invoice_id
                        AND l.kind = 'promotional_credit'), 0) AS promotional
    FROM {{ ref('fct_invoices') }} i
    WHERE i.close_month = $month
      AND i.invoice_id NOT IN (SELECT invoice_id FROM meterbook_ledger.invoices)
      AND i.subscription_id NOT IN (SELECT subscription_id FROM meterbook_ledger.invoices
                                    WHERE close_month = $month)
),
frozen AS (
    SELECT i.invoice_id, i.customer_id, i.credits_applied,
           coalesce(-(SELECT sum(l.amount) FROM meterbook_ledger.invoice_lines l
                      WHERE l.invoice_id = i.invoice_id AND l.kind = 'promotional_credit'), 0)
    FROM meterbook_ledger.invoices i WHERE i.close_month = $month
)
SELECT * FROM (SELECT * FROM drafts UNION ALL SELECT * FROM frozen)
WHERE credits_applied <> 0 OR promotional <> 0 OR invoice_id IN (SELECT unnest($drawn::VARCHAR[]))
"""


def credited_invoices(
    con: duckdb.DuckDBPyConnection, close_month: str, drawn_on: list[str]
) -> dict[str, tuple[str, Decimal, Decimal]]:
    """The month's invoices (drafts and finalized, as `invoices_with_ledger` shows them) that
    show credits or that the ledger drew on, without building their documents."""
    if not model_exists(con, "fct_invoices"):
        return {}
    ensure_ledger_schema(con)
    rows = con.execute(with_refs(_CREDITED), {"month": close_month, "drawn": drawn_on}).fetchall()
    return {iid: (customer, promotional, paid) for iid, customer, paid, promotional in rows}


def check_wallets(con: duckdb.DuckDBPyConnection, close_month: str) -> tuple[bool, dict]:
    """Asset check: balances never below zero up to this month; the month's invoices match
    their draws. Later months' drafts are left out: closing an earlier month again makes them
    stale, and their own close (finalization refuses them until then) draws them again."""
    everything = ledger_entries(con)
    entries = [e for e in everything if e["close_month"] <= close_month]
    drawn_on = sorted(
        {e["invoice_id"] for e in entries if e["close_month"] == close_month and e["invoice_id"]}
    )
    credited = credited_invoices(con, close_month, drawn_on)
    problems = balance_problems(entries) + draw_problems(entries, credited)
    later = sorted({e["close_month"] for e in everything if e["close_month"] > close_month})
    return not problems, {
        "entries": len(entries),
        "later_months_to_close_again": later,
        "invoices_with_credits": len(credited),
        "problems": problems[:50],
        "problem_count": len(problems),
    }


def balance_summary(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Balances per customer and kind, and their totals per currency and kind."""
    per_customer: dict[tuple[str, str], dict[str, Decimal]] = defaultdict(
        lambda: {"promotional": ZERO, "paid": ZERO}
    )
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: {"promotional": ZERO, "paid": ZERO})
    for e in entries:
        per_customer[(e["customer_id"], e["currency"])][e["grant_kind"]] += e["amount"]
        totals[e["currency"]][e["grant_kind"]] += e["amount"]
    return {"per_customer": dict(per_customer), "totals": dict(totals)}
