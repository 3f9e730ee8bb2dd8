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
        """The nightly refresh's daily usage where it ran over the invoices' days; otherwise
        (a workspace closed from the CLI, with no daemon) the same days from the metered
        events, so that every document gets its charts."""
        if not invoices:
            return cls(False, {})
        start = min(date.fromisoformat(i["period_start"]) for i in invoices)
        end = max(date.fromisoformat(i["period_end"]) for i in invoices)
        for query in (_FROM_DAILY, _FROM_EVENTS):
            model = "fct_daily_meter_usage" if query is _FROM_DAILY else "int_events_metered"
            if not model_exists(con, model):
                continue
            rows = _rows(con, query.format(relation=relation(model), **_bounds(start, end)))
            if rows:
                return cls(True, rows)
        return cls(False, {})

    def points(
        self, customer_id: str, meter_code: str, start: date, end: date, additive: bool
    ) -> list[DailyPoint]:
        """UTC days of [start, end) with usage; groups added for additive meters, else the max."""
        return [
            DailyPoint(day, total if additive else peak)
            for day, total, peak in self.rows.get((customer_id, meter_code), [])
            if start <= day < end
        ]


_FROM_DAILY = """
    SELECT billing_customer_id, meter_code, usage_date,
           cast(sum(daily_quantity) AS DECIMAL(38, 12)),
           cast(max(daily_quantity) AS DECIMAL(38, 12))
    FROM {relation}
    WHERE usage_date >= {low} AND usage_date < {high}
    GROUP BY ALL ORDER BY 1, 2, 3
"""

# a day's quantity per group as the meter aggregates it; the literal bounds reach the scans
# of the fates and raw events (both stored in read order), so only the period's rows are read
_FROM_EVENTS = """
    WITH days AS (
        SELECT billing_customer_id, meter_code, event_date AS usage_date, group_key,
               CASE any_value(aggregation)
                   WHEN 'count' THEN cast(count(*) AS DECIMAL(38, 12))
                   WHEN 'count_unique' THEN cast(count(DISTINCT text_value) AS DECIMAL(38, 12))
                   WHEN 'max' THEN max(value)
                   WHEN 'min' THEN min(value)
                   WHEN 'sum' THEN sum(value)
                   ELSE arg_max(value, event_ts)  -- latest, time_weighted: the day's last level
               END AS quantity
        FROM {relation}
        WHERE event_date >= {low} AND event_date < {high}
          AND event_ts >= {low_ts} AND event_ts < {high_ts}
        GROUP BY ALL
    )
    SELECT billing_customer_id, meter_code, usage_date,
           cast(sum(quantity) AS DECIMAL(38, 12)), cast(max(quantity) AS DECIMAL(38, 12))
    FROM days GROUP BY ALL ORDER BY 1, 2, 3
"""


def _bounds(start: date, end: date) -> dict[str, str]:
    # dates from the invoices' ISO strings: safe as literals, and literals prune row groups
    low, high = date.fromisoformat(str(start)), date.fromisoformat(str(end))
    return {
        "low": f"DATE '{low}'",
        "high": f"DATE '{high}'",
        "low_ts": f"TIMESTAMPTZ '{low} 00:00:00+00'",
        "high_ts": f"TIMESTAMPTZ '{high} 00:00:00+00'",
    }


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> dict:
    rows: dict[tuple[str, str], list[tuple[date, Decimal, Decimal]]] = {}
    for customer, meter, day, total, peak in con.execute(sql).fetchall():
        rows.setdefault((customer, meter), []).append((day, total, peak))
    return rows
