"""Billing periods (SPEC 3.3): calendar and anniversary, month / quarter / year, the close rule."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.billing.month import BillingMonth
from orchestration.billing.periods import (
    Period,
    add_months,
    local_midnight,
    next_period,
    period_containing,
    period_number,
    periods_closing_in,
)

D = date


def P(a: str, b: str) -> Period:
    return Period(D.fromisoformat(a), D.fromisoformat(b))


@pytest.mark.parametrize(
    ("day", "months", "anchor", "expected"),
    [
        (D(2026, 1, 31), 1, None, D(2026, 2, 28)),
        (D(2028, 1, 31), 1, None, D(2028, 2, 29)),  # leap year
        (D(2026, 2, 28), 1, 31, D(2026, 3, 31)),  # back to the anchor day
        (D(2026, 11, 30), 3, None, D(2027, 2, 28)),
        (D(2026, 3, 15), -3, None, D(2025, 12, 15)),
        (D(2026, 5, 31), 12, None, D(2027, 5, 31)),
    ],
)
def test_add_months_clamps_to_month_end(day, months, anchor, expected):
    assert add_months(day, months, anchor) == expected


@pytest.mark.parametrize(
    ("interval", "day", "expected"),
    [
        ("month", "2026-10-01", P("2026-10-01", "2026-11-01")),
        ("month", "2026-10-31", P("2026-10-01", "2026-11-01")),
        ("month", "2026-12-15", P("2026-12-01", "2027-01-01")),
        ("quarter", "2026-10-10", P("2026-10-01", "2027-01-01")),
        ("quarter", "2026-03-31", P("2026-01-01", "2026-04-01")),
        ("quarter", "2026-04-01", P("2026-04-01", "2026-07-01")),
        ("quarter", "2026-08-20", P("2026-07-01", "2026-10-01")),
        ("year", "2026-07-04", P("2026-01-01", "2027-01-01")),
    ],
)
def test_calendar_periods(interval, day, expected):
    start = D(2025, 6, 17)  # calendar periods do not depend on the start date
    assert period_containing(D.fromisoformat(day), interval, "calendar", start) == expected


@pytest.mark.parametrize(
    ("interval", "start", "day", "expected"),
    [
        ("month", "2026-03-15", "2026-10-14", P("2026-09-15", "2026-10-15")),
        ("month", "2026-03-15", "2026-10-15", P("2026-10-15", "2026-11-15")),
        ("month", "2026-03-15", "2026-03-15", P("2026-03-15", "2026-04-15")),
        # day 31: clamped in short months, back to 31 afterwards
        ("month", "2026-01-31", "2026-02-28", P("2026-02-28", "2026-03-31")),
        ("month", "2026-01-31", "2026-02-27", P("2026-01-31", "2026-02-28")),
        ("month", "2026-01-31", "2026-04-30", P("2026-04-30", "2026-05-31")),
        ("month", "2026-01-30", "2026-03-01", P("2026-02-28", "2026-03-30")),
        ("quarter", "2026-02-10", "2026-10-01", P("2026-08-10", "2026-11-10")),
        ("quarter", "2026-11-30", "2027-03-01", P("2027-02-28", "2027-05-30")),
        ("year", "2024-02-29", "2026-06-01", P("2026-02-28", "2027-02-28")),
        ("year", "2024-02-29", "2028-03-01", P("2028-02-29", "2029-02-28")),
    ],
)
def test_anniversary_periods(interval, start, day, expected):
    found = period_containing(D.fromisoformat(day), interval, "anniversary", D.fromisoformat(start))
    assert found == expected


@given(
    start=st.dates(D(2020, 1, 1), D(2030, 12, 31)),
    offset=st.integers(0, 2000),
    interval=st.sampled_from(["month", "quarter", "year"]),
    anchor=st.sampled_from(["calendar", "anniversary"]),
)
def test_periods_tile_time(start, offset, interval, anchor):
    """Every day is in exactly one period, and the next period starts where it ends."""
    day = start + timedelta(days=offset)
    period = period_containing(day, interval, anchor, start)
    assert period.contains(day)
    following = next_period(period, interval, anchor, start)
    assert following.start == period.end
    assert period_containing(period.last_day, interval, anchor, start) == period
    assert 28 <= period.days <= 366


def test_period_number_counts_from_the_period_containing_start_date():
    start = D(2026, 3, 15)
    assert period_number(P("2026-03-01", "2026-04-01"), "month", "calendar", start) == 1
    assert period_number(P("2026-05-01", "2026-06-01"), "month", "calendar", start) == 3
    assert period_number(P("2026-03-15", "2026-04-15"), "month", "anniversary", start) == 1
    assert period_number(P("2027-03-15", "2027-04-15"), "month", "anniversary", start) == 13
    assert period_number(P("2026-10-01", "2027-01-01"), "quarter", "calendar", start) == 4


def _closing(month, interval, anchor, start, end=None):
    return periods_closing_in(
        BillingMonth.parse(month).period,
        interval,
        anchor,
        D.fromisoformat(start),
        D.fromisoformat(end) if end else None,
    )


def test_close_bills_the_period_whose_last_day_is_in_the_month():
    assert _closing("2026-10", "month", "calendar", "2026-01-01") == [
        (P("2026-10-01", "2026-11-01"), P("2026-10-01", "2026-11-01"))
    ]
    # mid-month start: the first period is cut to the start date
    assert _closing("2026-10", "month", "calendar", "2026-10-10") == [
        (P("2026-10-01", "2026-11-01"), P("2026-10-10", "2026-11-01"))
    ]
    # not started yet, or already over: nothing
    assert _closing("2026-10", "month", "calendar", "2026-11-01") == []
    assert _closing("2026-10", "month", "calendar", "2026-01-01", "2026-10-01") == []


def test_anniversary_period_closes_in_the_month_of_its_last_day():
    # 2026-09-15 .. 2026-10-15: last day Oct 14, billed by the October close
    assert _closing("2026-10", "month", "anniversary", "2026-03-15") == [
        (P("2026-09-15", "2026-10-15"), P("2026-09-15", "2026-10-15"))
    ]
    # started Oct 20: first period ends Nov 19, nothing in October
    assert _closing("2026-10", "month", "anniversary", "2026-10-20") == []
    assert _closing("2026-11", "month", "anniversary", "2026-10-20") == [
        (P("2026-10-20", "2026-11-20"), P("2026-10-20", "2026-11-20"))
    ]


def test_ending_mid_period_gets_its_last_invoice_in_the_month_it_ends():
    assert _closing("2026-11", "quarter", "calendar", "2026-01-01", "2026-11-15") == [
        (P("2026-10-01", "2027-01-01"), P("2026-10-01", "2026-11-15"))
    ]
    assert _closing("2026-12", "quarter", "calendar", "2026-01-01", "2026-11-15") == []
    # end_date on the 1st: the last day is the 31st of the month before
    assert _closing("2026-10", "month", "calendar", "2026-01-01", "2026-11-01") == [
        (P("2026-10-01", "2026-11-01"), P("2026-10-01", "2026-11-01"))
    ]


def test_quarters_close_only_in_their_last_month():
    assert _closing("2026-10", "quarter", "calendar", "2026-01-01") == []
    assert _closing("2026-12", "quarter", "calendar", "2026-01-01") == [
        (P("2026-10-01", "2027-01-01"), P("2026-10-01", "2027-01-01"))
    ]
    assert _closing("2026-12", "year", "calendar", "2026-02-10") == [
        (P("2026-01-01", "2027-01-01"), P("2026-02-10", "2027-01-01"))
    ]


def test_a_subscription_shorter_than_a_period():
    assert _closing("2026-10", "month", "calendar", "2026-10-05", "2026-10-20") == [
        (P("2026-10-01", "2026-11-01"), P("2026-10-05", "2026-10-20"))
    ]


@given(
    start=st.dates(D(2024, 1, 1), D(2027, 12, 31)),
    interval=st.sampled_from(["month", "quarter", "year"]),
    anchor=st.sampled_from(["calendar", "anniversary"]),
    length=st.one_of(st.none(), st.integers(1, 900)),
)
def test_every_active_day_is_billed_by_exactly_one_close(start, interval, anchor, length):
    end = start + timedelta(days=length) if length else None
    billed: list[Period] = []
    month = D(start.year, start.month, 1)
    for _ in range(40):
        billed += [
            cut
            for _, cut in _closing(
                month.strftime("%Y-%m"), interval, anchor, str(start), str(end) if end else None
            )
        ]
        month = add_months(month, 1)
    billed.sort()
    assert billed[0].start == start
    for before, after in zip(billed, billed[1:], strict=False):
        assert before.end == after.start  # no gap, no overlap
    if end is not None and end < add_months(D(start.year, start.month, 1), 28):
        assert billed[-1].end == end


@pytest.mark.parametrize("text", ["2026-13", "2026-1", "26-10", "2026-10-01", "", "2026-00"])
def test_close_month_must_be_yyyy_mm(text):
    with pytest.raises(ValueError, match="YYYY-MM"):
        BillingMonth.parse(text)


def test_local_midnight_is_the_customers_midnight():
    assert local_midnight(D(2026, 10, 1), "Asia/Tokyo") == datetime(2026, 9, 30, 15, tzinfo=UTC)
    assert local_midnight(D(2026, 10, 1), "UTC") == datetime(2026, 10, 1, tzinfo=UTC)
    # New York: EDT (-4) before Nov 1, EST (-5) after the switch on 2026-11-01
    assert local_midnight(D(2026, 11, 1), "America/New_York") == datetime(
        2026, 11, 1, 4, tzinfo=UTC
    )
    assert local_midnight(D(2026, 12, 1), "America/New_York") == datetime(
        2026, 12, 1, 5, tzinfo=UTC
    )


def test_local_midnight_where_midnight_does_not_exist():
    # Santiago jumps from 00:00 to 01:00 on 2026-09-06: the day starts at 01:00 -03 = 04:00Z
    assert local_midnight(D(2026, 9, 6), "America/Santiago") == datetime(2026, 9, 6, 4, tzinfo=UTC)
