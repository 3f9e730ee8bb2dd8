"""Partitions, defined once: usage is daily (UTC days), billing is monthly ('YYYY-MM')."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from dagster import BackfillPolicy, DailyPartitionsDefinition, MonthlyPartitionsDefinition

from orchestration.billing.month import BillingMonth

FIRST_DAY = "2024-01-01"


def _fixed_now() -> datetime | None:
    text = os.environ.get("METERBOOK_NOW")
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _daily() -> DailyPartitionsDefinition:
    """UTC days up to today (included, so the month so far can be refreshed)."""
    now, wall = _fixed_now(), datetime.now(UTC)
    bounds = {"end_offset": 1}
    if now is not None:  # METERBOOK_NOW replays a moment: partitions end there
        ahead = (now.date() - wall.date()).days
        after = (now.date() + timedelta(days=1)).isoformat()
        bounds = {"end_offset": ahead + 1} if ahead >= 0 else {"end_date": after}
    return DailyPartitionsDefinition(start_date=FIRST_DAY, fmt="%Y-%m-%d", **bounds)


def _monthly() -> MonthlyPartitionsDefinition:
    """Months up to the one in progress (included, so its draft can be kept current)."""
    now, wall = _fixed_now(), datetime.now(UTC)
    bounds = {"end_offset": 1}
    if now is not None:
        ahead = (now.year * 12 + now.month) - (wall.year * 12 + wall.month)
        after = str(BillingMonth.of(now).next())
        bounds = {"end_offset": ahead + 1} if ahead >= 0 else {"end_date": after}
    return MonthlyPartitionsDefinition(start_date=FIRST_DAY[:7], fmt="%Y-%m", **bounds)


daily_usage = _daily()
monthly_billing = _monthly()


# Every partitioned asset reads its one partition key (dbt vars, Python writes keyed by it).
ONE_PARTITION_PER_RUN = BackfillPolicy.multi_run(max_partitions_per_run=1)
