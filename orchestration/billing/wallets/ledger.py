"""The wallet ledger (SPEC 7): permanent entries (meterbook_ledger.wallet_entries, written by
finalization, never changed) and the draft entries of months not finalized
(int_wallet_draws, rebuilt by every close). A balance is the sum of its entries."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import duckdb

from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.models import model_exists, relation

PERMANENT = "meterbook_ledger.wallet_entries"
# A month's draft entries of no invoice count only until the month is first finalized: then
# its permanent ones are the month's. A later build of that month (the re-rate of a finalized
# month for late usage rates only the subscriptions the late events touch) computes others,
# and they must neither count nor be frozen.
_MONTH_OPEN = "d.close_month NOT IN (SELECT close_month FROM meterbook_ledger.period_finalizations)"
_COLUMNS = (
    "close_month, seq, entry_id, entry_type, customer_id, grant_id, grant_kind, amount, "
    "entry_date, currency, invoice_id, line_id, charge_line_id, grant_source, "
    "subscription_id, granted_on, expires_on, priority, applies_to, rollover_max, grant_amount"
)


def freeze_entries(con: duckdb.DuckDBPyConnection, close_month: str, now: datetime) -> int:
    """Inside finalization's transaction, after the invoices are inserted with `now`: the
    month's draft entries become permanent, those of the invoices finalized now and, at the
    month's first finalization only, those of no invoice (grants, expiry, rollover, top-ups).
    An entry already permanent is left alone, so finalizing twice adds nothing."""
    if not model_exists(con, "int_wallet_draws"):
        return 0  # closed before wallets existed: nothing to freeze
    before = con.execute(f"SELECT count(*) FROM {PERMANENT}").fetchone()[0]
    con.execute(
        f"""
        INSERT INTO {PERMANENT}
        SELECT {_COLUMNS}, ? AS finalized_at
        FROM {relation("int_wallet_draws")} d
        WHERE d.close_month = ? AND d.record_type = 'entry'
          AND (CASE WHEN d.invoice_id IS NULL THEN {_MONTH_OPEN}
                    ELSE d.invoice_id IN (SELECT invoice_id FROM meterbook_ledger.invoices
                                          WHERE finalized_at = ?) END)
          AND d.entry_id NOT IN (SELECT entry_id FROM {PERMANENT})
        ORDER BY d.seq
        """,
        [now, close_month, now],
    )
    return con.execute(f"SELECT count(*) FROM {PERMANENT}").fetchone()[0] - before


def ledger_sql(drafts: str | None) -> str:
    """The wallet ledger as one SELECT: the permanent entries, then the drafts' entries that
    are not permanent yet. A draft entry of an invoice already finalized is left out (the
    frozen draws are the ones that count, even if a re-close computed others), as is one of
    no invoice in a month already finalized, and one whose id is already permanent.
    `drafts`: the relation holding int_wallet_draws, or None."""
    sql = f"SELECT {_COLUMNS}, false AS provisional FROM {PERMANENT}"
    if drafts:
        sql += f"""
        UNION ALL BY NAME
        SELECT {_COLUMNS}, true AS provisional FROM {drafts} d
        WHERE d.record_type = 'entry'
          AND d.entry_id NOT IN (SELECT entry_id FROM {PERMANENT})
          AND (CASE WHEN d.invoice_id IS NULL THEN {_MONTH_OPEN}
                    ELSE d.invoice_id NOT IN (SELECT invoice_id FROM meterbook_ledger.invoices)
               END)"""
    return sql


def ledger_entries(
    con: duckdb.DuckDBPyConnection, customer_id: str | None = None
) -> list[dict[str, Any]]:
    """Every entry of the wallet ledger, in close order (`provisional`: a draft's)."""
    ensure_ledger_schema(con)
    drafts = relation("int_wallet_draws") if model_exists(con, "int_wallet_draws") else None
    cursor = con.execute(
        f"SELECT * FROM ({ledger_sql(drafts)}) WHERE ? IS NULL OR customer_id = ?"
        " ORDER BY close_month, provisional, seq",
        [customer_id, customer_id],
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def balances(entries: list[dict[str, Any]]) -> dict[tuple[str, str], Decimal]:
    """The balance of every (customer, grant): the sum of its entries."""
    out: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for entry in entries:
        out[(entry["customer_id"], entry["grant_id"])] += entry["amount"]
    return dict(out)


def balance_problems(entries: list[dict[str, Any]]) -> list[str]:
    """Grants whose running balance went below zero at some entry, in ledger order."""
    running: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    problems = []
    for entry in entries:
        key = (entry["customer_id"], entry["grant_id"])
        running[key] += entry["amount"]
        if running[key] < 0:
            problems.append(
                f"{key[0]} grant {key[1]}: balance {running[key]:f} after entry "
                f"{entry['entry_id']} ({entry['entry_type']}, close {entry['close_month']})"
            )
    return problems
