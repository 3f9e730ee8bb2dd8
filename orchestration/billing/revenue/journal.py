"""The revenue journal as a general ledger imports it (SPEC 8): one CSV row per day,
currency, entry and account, debits and credits in the currency's minor digits, account
roles named by `settings.accounts`. Same ledger, same bytes: rows are sorted and every
figure is formatted the one way."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import duckdb

from orchestration.billing.money import format_money
from orchestration.catalog.models import Accounts
from orchestration.warehouse.models import relation

HEADER = ("date", "currency", "entry", "account", "debit", "credit")
# within a day and currency: the order the entries happen in, debits before credits
ENTRY_ORDER = ("invoice", "tax", "revenue", "credits_applied", "breakage", "credit_note")


def journal_rows(
    con: duckdb.DuckDBPyConnection, month: str, accounts: Accounts
) -> list[dict[str, Any]]:
    """The month's journal lines, account roles replaced by the catalog's account names."""
    rows = con.execute(
        f"SELECT entry_date, currency, entry, account_role, debit, credit"
        f" FROM {relation('fct_revenue_journal')} WHERE revenue_month = ?",
        [month],
    ).fetchall()
    out = [
        {
            "date": day.isoformat(),
            "currency": currency,
            "entry": entry,
            "account": getattr(accounts, role),
            "debit": format_money(debit, currency),
            "credit": format_money(credit, currency),
        }
        for day, currency, entry, role, debit, credit in rows
    ]
    out.sort(
        key=lambda r: (
            r["date"],
            r["currency"],
            ENTRY_ORDER.index(r["entry"]),
            r["debit"] == format_money(0, r["currency"]),  # debits first
            r["account"],
        )
    )
    return out


def journal_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_journal(path: Path, rows: list[dict[str, Any]]) -> None:
    """Written whole or not at all: a temporary file beside it, renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(journal_csv(rows), encoding="utf-8")
    os.replace(temporary, path)
