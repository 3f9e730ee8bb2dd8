"""Billing periods (SPEC 3.3). Pure date arithmetic on local calendar dates.

A period is a half-open interval of local dates `[start, end)`; its boundaries are midnight
in the customer's timezone, so the dates are turned into instants only at the edge
(`local_midnight`). Calendar periods start on the 1st (quarters in Jan/Apr/Jul/Oct, years
in January); anniversary periods step 1, 3 or 12 months from the subscription's start_date,
the day clamped to the month's last day (Jan 31 -> Feb 28 -> Mar 31: always from the
original day, so a short month does not drift the anchor).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

Interval = Literal["month", "quarter", "year"]
Anchor = Literal["calendar", "anniversary"]
MONTHS_PER_INTERVAL = {"month": 1, "quarter": 3, "year": 12}


@dataclass(frozen=True, order=True)
class Period:
    start: date
    end: date  # exclusive

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    @property
    def last_day(self) -> date:
        return self.end - timedelta(days=1)

    def contains(self, day: date) -> bool:
        return self.start <= day < self.end

    def cut(self, start: date, end: date | None) -> Period | None:
        """This period limited to `[start, end)`; None when nothing is left."""
        lo = max(self.start, start)
        hi = self.end if end is None else min(self.end, end)
        return Period(lo, hi) if lo < hi else None


def add_months(day: date, months: int, anchor_day: int | None = None) -> date:
    """`day` moved by `months`, on `anchor_day` (default: day's own) clamped to month end."""
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    wanted = anchor_day or day.day
    return date(year, month + 1, min(wanted, calendar.monthrange(year, month + 1)[1]))


def _month_index(day: date) -> int:
    return day.year * 12 + day.month - 1


def period_containing(day: date, interval: Interval, anchor: Anchor, start_date: date) -> Period:
    """The full billing period (before any cut) that contains `day`."""
    step = MONTHS_PER_INTERVAL[interval]
    if anchor == "calendar":
        first_month = (_month_index(day) // step) * step
        start = date(first_month // 12, first_month % 12 + 1, 1)
        return Period(start, add_months(start, step))
    k = (_month_index(day) - _month_index(start_date)) // step
    while anniversary_start(start_date, step, k) > day:
        k -= 1
    while anniversary_start(start_date, step, k + 1) <= day:
        k += 1
    return Period(
        anniversary_start(start_date, step, k), anniversary_start(start_date, step, k + 1)
    )


def anniversary_start(start_date: date, step: int, k: int) -> date:
    return add_months(start_date, k * step, start_date.day)


def next_period(period: Period, interval: Interval, anchor: Anchor, start_date: date) -> Period:
    return period_containing(period.end, interval, anchor, start_date)


def period_number(period: Period, interval: Interval, anchor: Anchor, start_date: date) -> int:
    """1 for the period containing start_date (even when partial), 2 for the next, ..."""
    first = period_containing(start_date, interval, anchor, start_date)
    step = MONTHS_PER_INTERVAL[interval]
    return (_month_index(period.start) - _month_index(first.start)) // step + 1


def periods_closing_in(
    close_month: Period,
    interval: Interval,
    anchor: Anchor,
    start_date: date,
    end_date: date | None,
) -> list[tuple[Period, Period]]:
    """(full period, period cut to the active dates) for every period whose cut's last day
    falls in `close_month`: the close for month M bills exactly these (SPEC 3.3)."""
    found = []
    period = period_containing(close_month.start, interval, anchor, start_date)
    while period.start < close_month.end:
        active = period.cut(start_date, end_date)
        if active is not None and close_month.contains(active.last_day):
            found.append((period, active))
        period = next_period(period, interval, anchor, start_date)
    return found


def local_midnight(day: date, timezone: str) -> datetime:
    """The first instant of `day` in `timezone`, as UTC. Where midnight does not exist (a DST
    jump at 00:00), Python's fold=0 rule yields the instant the day actually begins."""
    return datetime.combine(day, time(0), ZoneInfo(timezone)).astimezone(UTC)
