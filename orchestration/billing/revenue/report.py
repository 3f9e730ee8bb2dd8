"""`meterbook revenue --period M` (SPEC 8): the month's recognized revenue by kind, the
deferred and unbilled roll-forwards per currency and customer, and the largest deferred
balances, read from the revenue marts the revenue job built.

Credit notes (SPEC 11) add two figures to a currency's block, only in a month where that
currency has some (so a month without any reads exactly as before): `recognized_credited`,
the revenue they reversed (already subtracted from `recognized` and `recognized_by_kind`),
and `deferred.credited`, what they took out of deferred revenue (opening + billed -
recognized - breakage - credited = closing)."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

import duckdb

from orchestration.billing.money import format_money
from orchestration.billing.month import BillingMonth
from orchestration.warehouse.models import relation

ZERO = Decimal(0)
DEFERRED = ("opening", "billed", "recognized", "breakage", "closing")
UNBILLED = ("opening", "recognized", "invoiced", "closing")
_ROLLFORWARD = (
    "recognized",
    *(f"deferred_{k}" for k in ("opening", "billed", "recognized", "breakage", "closing")),
    *(f"unbilled_{k}" for k in UNBILLED),
    "recognized_credited",
    "deferred_credited",
)


def revenue_document(con: duckdb.DuckDBPyConnection, month: str) -> dict[str, Any]:
    """The SPEC 8 JSON of calendar month `month` ('YYYY-MM')."""
    customers = _rollforward(con, month)
    by_kind = _recognized_by_kind(con, month)
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for row in customers:
        for name in _ROLLFORWARD:
            totals[row["currency"]][name] += row[name]
    currencies = {
        currency: _currency_block(currency, sums, by_kind.get(currency, {}))
        for currency, sums in sorted(totals.items())
    }
    return {
        "period": month,
        "currencies": currencies,
        "customers": [
            {
                "customer_id": row["customer_id"],
                "currency": row["currency"],
                "recognized": format_money(row["recognized"], row["currency"]),
                "deferred_closing": format_money(row["deferred_closing"], row["currency"]),
                "unbilled_closing": format_money(row["unbilled_closing"], row["currency"]),
            }
            for row in customers
        ],
    }


def _currency_block(currency: str, sums: dict, by_kind: dict[str, Decimal]) -> dict[str, Any]:
    def money(value: Decimal) -> str:
        return format_money(value, currency)

    block = {
        "recognized": money(sums["recognized"]),
        "recognized_by_kind": {kind: money(v) for kind, v in sorted(by_kind.items())},
        "deferred": {k: money(sums[f"deferred_{k}"]) for k in DEFERRED},
        "unbilled": {k: money(sums[f"unbilled_{k}"]) for k in UNBILLED},
    }
    if sums["recognized_credited"] or sums["deferred_credited"]:  # credit notes this month
        block = {
            "recognized": block["recognized"],
            "recognized_by_kind": block["recognized_by_kind"],
            "recognized_credited": money(sums["recognized_credited"]),
            "deferred": {
                **{k: block["deferred"][k] for k in DEFERRED if k != "closing"},
                "credited": money(sums["deferred_credited"]),
                "closing": block["deferred"]["closing"],
            },
            "unbilled": block["unbilled"],
        }
    return block


def _rollforward(con: duckdb.DuckDBPyConnection, month: str) -> list[dict[str, Any]]:
    cursor = con.execute(
        f"SELECT customer_id, currency, {', '.join(_ROLLFORWARD)}"
        f" FROM {relation('fct_revenue_rollforward')} WHERE revenue_month = ?"
        " ORDER BY customer_id, currency",
        [month],
    )
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _recognized_by_kind(con: duckdb.DuckDBPyConnection, month: str) -> dict[str, dict]:
    """Recognized revenue per currency and kind: discounts and promotional credits are in the
    kinds of the lines they reduce (the schedule's revenue_kind), breakage under its own."""
    first, end = BillingMonth.parse(month).first_day, BillingMonth.parse(month).end
    rows = con.execute(
        f"SELECT currency, revenue_kind, sum(amount) FROM {relation('fct_revenue_schedule')}"
        " WHERE row_type IN ('revenue', 'breakage') AND revenue_date >= ? AND revenue_date < ?"
        " GROUP BY ALL HAVING sum(amount) <> 0 ORDER BY ALL",
        [first, end],
    ).fetchall()
    out: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for currency, kind, amount in rows:
        out[currency][kind] = amount
    return out


def format_revenue(document: dict[str, Any], largest: int = 10) -> str:
    """The terminal view: per currency, recognized by kind and both roll-forwards, then the
    customers with the largest deferred balances at the month's end."""
    lines = [f"Revenue for {document['period']} (finalized invoices and wallet ledger)"]
    if not document["currencies"]:
        lines.append("  nothing recognized, deferred or unbilled in this month")
    for currency, block in document["currencies"].items():
        lines.append(f"\n{currency}: recognized {block['recognized']}")
        for kind, amount in block["recognized_by_kind"].items():
            lines.append(f"  {kind:<22}{amount:>16}")
        d, u = block["deferred"], block["unbilled"]
        if "recognized_credited" in block:
            lines.append(
                f"  (credit notes reversed {block['recognized_credited']} of revenue already recognized)"
            )
        credited = f" - credited {d['credited']}" if "credited" in d else ""
        lines.append(
            f"  deferred: opening {d['opening']} + billed in advance {d['billed']}"
            f" - recognized {d['recognized']} - breakage {d['breakage']}{credited}"
            f" = closing {d['closing']}"
        )
        lines.append(
            f"  unbilled: opening {u['opening']} + recognized {u['recognized']}"
            f" - invoiced {u['invoiced']} = closing {u['closing']}"
        )
    deferred = [c for c in document["customers"] if Decimal(c["deferred_closing"]) != 0]
    deferred.sort(key=lambda c: (-Decimal(c["deferred_closing"]), c["customer_id"]))
    if deferred:
        lines.append(f"\nLargest deferred balances at the end of {document['period']}:")
        for c in deferred[:largest]:
            lines.append(f"  {c['customer_id']:<24}{c['currency']:<5}{c['deferred_closing']:>16}")
        if len(deferred) > largest:
            lines.append(f"  … {len(deferred) - largest} more")
    return "\n".join(lines)
