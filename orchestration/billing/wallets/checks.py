"""Reconciliation of the wallets (SPEC 7): no balance ever below zero, and every invoice's
credit lines and paid credits are exactly the draws the ledger holds for it."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import duckdb

from orchestration.billing.ledger import invoices_with_ledger
from orchestration.billing.wallets.ledger import balance_problems, ledger_entries

ZERO = Decimal(0)


def draw_problems(entries: list[dict[str, Any]], invoices: list[dict[str, Any]]) -> list[str]:
    """Invoices whose promotional_credit lines or credits_applied differ from their draws."""
    drawn: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for e in entries:
        if e["entry_type"] == "draw" and e["invoice_id"]:
            drawn[(e["invoice_id"], e["grant_kind"])] -= e["amount"]
    problems = []
    for inv in invoices:
        iid = inv["invoice_id"]
        lines = -sum(
            (Decimal(ln["amount"]) for ln in inv["lines"] if ln["kind"] == "promotional_credit"),
            ZERO,
        )
        for kind, billed in (("promotional", lines), ("paid", Decimal(inv["credits_applied"]))):
            if drawn[(iid, kind)] != billed:
                problems.append(
                    f"invoice {iid} ({inv['customer_id']}): {kind} credits {billed} on the "
                    f"invoice but {drawn[(iid, kind)]} drawn in the wallet ledger"
                )
    return problems


def check_wallets(con: duckdb.DuckDBPyConnection, close_month: str) -> tuple[bool, dict]:
    """Asset check: balances never below zero up to this month; the month's invoices match
    their draws. Later months' drafts are left out: closing an earlier month again makes them
    stale, and their own close (finalization refuses them until then) draws them again."""
    everything = ledger_entries(con)
    entries = [e for e in everything if e["close_month"] <= close_month]
    document = invoices_with_ledger(con, close_month)
    problems = balance_problems(entries) + draw_problems(entries, document["invoices"])
    later = sorted({e["close_month"] for e in everything if e["close_month"] > close_month})
    return not problems, {
        "entries": len(entries),
        "later_months_to_close_again": later,
        "invoices_checked": len(document["invoices"]),
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
