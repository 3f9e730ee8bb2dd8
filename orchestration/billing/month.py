"""The billing month: the one value a close, a finalization, a Stripe sync and a report are for.

Written `YYYY-MM` everywhere it leaves Python (the CLI's `--period`, Dagster's monthly
partition key, dbt's `METERBOOK_CLOSE_MONTH`, the ledger's `period` column); parsed, stepped
and turned into instants only here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

from orchestration.billing.periods import Period, add_months, local_midnight

_TEXT = re.compile(r"([0-9]{4})-([0-9]{2})")  # ASCII digits: \d takes any script's


@dataclass(frozen=True, order=True)
class BillingMonth:
    year: int
    month: int

    def __post_init__(self) -> None:
        if not (1 <= self.month <= 12 and 1 <= self.year <= 9999):
            raise ValueError(f"not a billing month: year {self.year}, month {self.month}")

    @classmethod
    def parse(cls, text: object) -> BillingMonth:
        """'YYYY-MM'; a ValueError that names the text, and says which part is wrong when
        the shape is right but the month or year is not (`2026-13`)."""
        match = _TEXT.fullmatch(text) if isinstance(text, str) else None
        if not match:
            raise ValueError(f"a billing month looks like YYYY-MM, got {text!r}")
        year, month = int(match[1]), int(match[2])
        if not 1 <= month <= 12:
            raise ValueError(
                f"month {match[2]} is out of range (01 to 12) in {text!r}: months are YYYY-MM"
            )
        if year < 1:
            raise ValueError(
                f"year {match[1]} is out of range (0001 to 9999) in {text!r}: months are YYYY-MM"
            )
        return cls(year, month)

    @classmethod
    def of(cls, day: date | datetime) -> BillingMonth:
        """The month a calendar date (or an instant's own date) falls in."""
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def end(self) -> date:
        """The first day after the month (periods are half-open)."""
        return add_months(self.first_day, 1)

    @property
    def period(self) -> Period:
        return Period(self.first_day, self.end)

    def shifted(self, months: int) -> BillingMonth:
        return BillingMonth.of(add_months(self.first_day, months))

    def next(self) -> BillingMonth:
        return self.shifted(1)

    def previous(self) -> BillingMonth:
        return self.shifted(-1)

    def through(self, last: BillingMonth) -> list[BillingMonth]:
        """This month and every one after it up to `last`, included (none if `last` is
        earlier)."""
        months = []
        month = self
        while month <= last:
            months.append(month)
            month = month.next()
        return months

    def bounds(self, timezone: str) -> tuple[datetime, datetime]:
        """[first instant, first instant after) of the month in `timezone`, as UTC."""
        return local_midnight(self.first_day, timezone), local_midnight(self.end, timezone)
