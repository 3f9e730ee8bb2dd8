"""Segments (SPEC 3.3): cuts at start/end, versions (unpinned only), overrides, trial_end."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestration.billing.periods import Period, period_containing
from orchestration.billing.segments import (
    Segment,
    paid_days,
    segments_of,
    trial_end_of,
    version_for,
)
from orchestration.catalog.models import Plan, Subscription

D = date


def plan(*versions: tuple[str, int]) -> Plan:
    """A plan with versions (effective_from, trial_days)."""
    return Plan.model_validate(
        {
            "code": "pro",
            "currency": "USD",
            "versions": [
                {"version": i, "effective_from": day, "trial_days": trial}
                for i, (day, trial) in enumerate(versions, start=1)
            ],
        }
    )


def sub(**fields) -> Subscription:
    base = {"id": "s", "customer_id": "c", "plan": "pro", "start_date": "2026-01-01"}
    return Subscription.model_validate(base | fields)


OCT = Period(D(2026, 10, 1), D(2026, 11, 1))
TWO_VERSIONS = plan(("2026-01-01", 0), ("2026-10-16", 0))
ONE_VERSION = plan(("2026-01-01", 0))


def test_one_segment_when_nothing_changes():
    assert segments_of(OCT, sub(), ONE_VERSION) == [
        Segment(D(2026, 10, 1), D(2026, 11, 1), 1, False)
    ]


def test_a_new_version_cuts_unpinned_subscriptions():
    assert segments_of(OCT, sub(), TWO_VERSIONS) == [
        Segment(D(2026, 10, 1), D(2026, 10, 16), 1, False),
        Segment(D(2026, 10, 16), D(2026, 11, 1), 2, False),
    ]


def test_pinned_subscriptions_keep_the_version_in_force_at_start_date():
    assert segments_of(OCT, sub(pin_version=True), TWO_VERSIONS) == [
        Segment(D(2026, 10, 1), D(2026, 11, 1), 1, False)
    ]
    later = sub(pin_version=True, start_date="2026-10-20")
    assert version_for(later, TWO_VERSIONS, D(2026, 12, 1)).version == 2


def test_overrides_cut_at_effective_from_and_effective_to():
    s = sub(
        price_overrides=[
            {
                "meter": "tokens",
                "model": "per_unit",
                "unit_price": "1",
                "effective_from": "2026-10-05",
                "effective_to": "2026-10-25",
            }
        ]
    )
    cuts = [(seg.start.day, seg.end.day) for seg in segments_of(OCT, s, plan(("2026-01-01", 0)))]
    assert cuts == [(1, 5), (5, 25), (25, 1)]


def test_trial_end_from_the_version_in_force_at_start_date():
    p = plan(("2026-01-01", 14), ("2026-10-05", 30))
    assert trial_end_of(sub(start_date="2026-10-01"), p) == D(2026, 10, 15)
    assert trial_end_of(sub(start_date="2026-10-10"), p) == D(2026, 11, 9)
    assert trial_end_of(sub(start_date="2026-10-01", trial_end="2026-10-03"), p) == D(2026, 10, 3)
    assert trial_end_of(sub(), plan(("2026-01-01", 0))) is None


def test_trial_cuts_and_flags_segments():
    p = plan(("2026-01-01", 14))
    s = sub(start_date="2026-10-10")
    period = Period(D(2026, 10, 10), D(2026, 11, 1))
    assert segments_of(period, s, p) == [
        Segment(D(2026, 10, 10), D(2026, 10, 24), 1, True),
        Segment(D(2026, 10, 24), D(2026, 11, 1), 1, False),
    ]
    assert paid_days(segments_of(period, s, p)) == 8


def test_end_date_inside_the_period_is_the_cut_periods_end():
    s = sub(end_date="2026-10-20")
    period = OCT.cut(s.start_date, s.end_date)
    assert segments_of(period, s, TWO_VERSIONS) == [
        Segment(D(2026, 10, 1), D(2026, 10, 16), 1, False),
        Segment(D(2026, 10, 16), D(2026, 10, 20), 2, False),
    ]


def test_cut_points_outside_the_period_do_not_cut():
    s = sub(trial_end="2026-02-01", end_date="2027-05-01")
    assert len(segments_of(OCT, s, ONE_VERSION)) == 1


@pytest.mark.parametrize("pin", [True, False])
@given(
    start=st.dates(D(2026, 1, 1), D(2026, 12, 31)),
    day=st.dates(D(2026, 1, 1), D(2027, 12, 31)),
    trial=st.integers(0, 60),
)
def test_segments_tile_the_period(pin, start, day, trial):
    p = plan(("2026-01-01", trial), ("2026-06-15", 0), ("2027-02-01", 3))
    s = sub(start_date=start.isoformat(), pin_version=pin)
    period = period_containing(day, "month", "calendar", start).cut(start, None)
    if period is None:
        return
    segments = segments_of(period, s, p)
    assert segments[0].start == period.start and segments[-1].end == period.end
    assert all(a.end == b.start for a, b in zip(segments, segments[1:], strict=False))
    assert sum(seg.days for seg in segments) == period.days
    assert 0 <= paid_days(segments) <= period.days
    for seg in segments:
        assert seg.version == version_for(s, p, seg.start).version
