"""The billing month: parsed, stepped and bounded in one place."""

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.billing.month import BillingMonth


def test_parse_and_print_round_trip():
    month = BillingMonth.parse("2026-10")
    assert (month.year, month.month) == (2026, 10)
    assert str(month) == "2026-10"
    assert month.period.start == date(2026, 10, 1) and month.end == date(2026, 11, 1)


@pytest.mark.parametrize("bad", ["2026-1", "26-10", "2026/10", "", None, 202610, "2026-10 "])
def test_anything_else_is_refused_naming_the_text(bad):
    with pytest.raises(ValueError, match=r"YYYY-MM, got"):
        BillingMonth.parse(bad)


@pytest.mark.parametrize(
    ("bad", "part"), [("2026-13", "month 13"), ("2026-00", "month 00"), ("0000-05", "year 0000")]
)
def test_the_right_shape_out_of_range_says_which_part(bad, part):
    with pytest.raises(
        ValueError, match=rf"^{part} is out of range .* in '{bad}': months are YYYY-MM$"
    ):
        BillingMonth.parse(bad)


def test_steps_cross_the_year():
    assert str(BillingMonth.parse("2026-12").next()) == "2027-01"
    assert str(BillingMonth.parse("2027-01").previous()) == "2026-12"
    assert str(BillingMonth.parse("2026-10").shifted(-22)) == "2024-12"


def test_bounds_are_local_midnights_in_utc():
    start, end = BillingMonth.parse("2026-10").bounds("America/New_York")
    assert start == datetime(2026, 10, 1, 4, tzinfo=UTC)  # EDT
    assert end == datetime(2026, 11, 1, 4, tzinfo=UTC)  # still EDT on Nov 1 00:00
    assert BillingMonth.parse("2026-03").bounds("UTC")[1] == datetime(2026, 4, 1, tzinfo=UTC)


@given(st.dates(min_value=date(1900, 2, 1), max_value=date(9999, 11, 30)))
def test_the_month_of_a_day_contains_it_and_neighbours_touch(day):
    month = BillingMonth.of(day)
    assert month.period.contains(day)
    assert month.next().first_day == month.end
    assert month.next().previous() == month
    assert BillingMonth.parse(str(month)) == month


def test_through_lists_every_month_up_to_the_last_included():
    first = BillingMonth.parse("2026-11")
    assert [str(m) for m in first.through(BillingMonth.parse("2027-02"))] == [
        "2026-11", "2026-12", "2027-01", "2027-02",
    ]  # fmt: skip
    assert first.through(first) == [first]
    assert first.through(BillingMonth.parse("2026-10")) == []
