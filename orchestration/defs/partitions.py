"""Partitions, defined once: usage is daily (UTC days), billing is monthly ('YYYY-MM')."""

from __future__ import annotations

import calendar
from datetime import date

from dagster import BackfillPolicy, DailyPartitionsDefinition, MonthlyPartitionsDefinition

FIRST_DAY = "2024-01-01"

daily_usage = DailyPartitionsDefinition(start_date=FIRST_DAY, fmt="%Y-%m-%d", end_offset=1)

# end_offset=1 includes the month in progress, so the daily refresh can keep its draft current.
monthly_billing = MonthlyPartitionsDefinition(start_date=FIRST_DAY[:7], fmt="%Y-%m", end_offset=1)


# Every partitioned asset reads its one partition key (dbt vars, Python writes keyed by it).
ONE_PARTITION_PER_RUN = BackfillPolicy.multi_run(max_partitions_per_run=1)


def parse_month(period: str) -> date:
    """'2026-10' -> date(2026, 10, 1); a clear error for anything else."""
    try:
        year, month = period.split("-")
        if len(year) != 4 or len(month) != 2:
            raise ValueError
        return date(int(year), int(month), 1)
    except ValueError:
        raise ValueError(f"period must look like YYYY-MM, got {period!r}") from None


def month_days(period: str) -> tuple[date, date]:
    """The first day of the month and the first day of the next, as a half-open range."""
    first = parse_month(period)
    last = calendar.monthrange(first.year, first.month)[1]
    following = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
    assert (following - first).days == last
    return first, following
