"""The daily usage behind an invoice's charts, loaded from the warehouse in one query."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import duckdb

from orchestration.warehouse.models import model_exists, relation


@dataclass(frozen=True)
class DailyPoint:
    day: date
    quantity: Decimal


@dataclass
class DailyUsage:
    """The daily usage behind a period's charts, read in one query (not one per invoice)."""

    available: bool
    # (billing customer, meter) -> [(day, sum over groups, max over groups)], by day
    rows: dict[tuple[str, str], list[tuple[date, Decimal, Decimal]]]

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, invoices: list[dict[str, Any]]) -> DailyUsage:
        if not invoices or not model_exists(con, "fct_daily_meter_usage"):
            return cls(False, {})
        start = min(date.fromisoformat(i["period_start"]) for i in invoices)
        end = max(date.fromisoformat(i["period_end"]) for i in invoices)
        rows: dict[tuple[str, str], list[tuple[date, Decimal, Decimal]]] = {}
        for customer, meter, day, total, peak in con.execute(
            f"""
            SELECT billing_customer_id, meter_code, usage_date,
                   cast(sum(daily_quantity) AS DECIMAL(38, 12)),
                   cast(max(daily_quantity) AS DECIMAL(38, 12))
            FROM {relation("fct_daily_meter_usage")}
            WHERE usage_date >= ? AND usage_date < ?
            GROUP BY ALL ORDER BY 1, 2, 3
            """,
            [start, end],
        ).fetchall():
            rows.setdefault((customer, meter), []).append((day, total, peak))
        return cls(True, rows)

    def points(
        self, customer_id: str, meter_code: str, start: date, end: date, additive: bool
    ) -> list[DailyPoint]:
        """UTC days of [start, end) with usage; groups added for additive meters, else the max."""
        return [
            DailyPoint(day, total if additive else peak)
            for day, total, peak in self.rows.get((customer_id, meter_code), [])
            if start <= day < end
        ]
