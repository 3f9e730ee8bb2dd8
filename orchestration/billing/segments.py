"""Segments of a billing period (SPEC 3.3). Pure functions of the catalog entries.

A period is cut wherever the pricing that applies to a day can change: the subscription's
start and end, the effective_from of a new plan version (unpinned subscriptions only), a
price override's effective_from / effective_to, and the end of the trial. Inside one
segment a single version, a single set of overrides and one trial state apply, so each
segment can be rated on its own with full tiers and free units.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from orchestration.billing.periods import Period
from orchestration.catalog.models import Plan, PlanVersion, Subscription, trial_end_of


@dataclass(frozen=True, order=True)
class Segment:
    start: date
    end: date  # exclusive
    version: int
    is_trial: bool

    @property
    def days(self) -> int:
        return (self.end - self.start).days


def version_for(sub: Subscription, plan: Plan, day: date) -> PlanVersion:
    """The version that prices `day`: the one in force at start_date when pinned."""
    version = plan.version_at(sub.start_date if sub.pin_version else day)
    if version is None:  # validation guarantees a version at start_date
        raise ValueError(f"plan {plan.code!r} has no version in force on {day}")
    return version


def cut_points(sub: Subscription, plan: Plan) -> set[date]:
    points = {sub.start_date}
    if sub.end_date is not None:
        points.add(sub.end_date)
    if not sub.pin_version:
        points.update(v.effective_from for v in plan.versions)
    for override in sub.price_overrides:
        points.update(d for d in (override.effective_from, override.effective_to) if d)
    trial_end = trial_end_of(sub, plan)
    if trial_end is not None:
        points.add(trial_end)
    return points


def segments_of(period: Period, sub: Subscription, plan: Plan) -> list[Segment]:
    """`period` (already cut to the active dates) split at every cut point inside it."""
    inner = sorted(p for p in cut_points(sub, plan) if period.start < p < period.end)
    bounds = [period.start, *inner, period.end]
    trial_end = trial_end_of(sub, plan)
    return [
        Segment(
            start=lo,
            end=hi,
            version=version_for(sub, plan, lo).version,
            is_trial=trial_end is not None and lo < trial_end,
        )
        for lo, hi in zip(bounds, bounds[1:], strict=False)
    ]


def paid_days(segments: list[Segment]) -> int:
    """Days that are active and out of trial: what fees and minimums are prorated by."""
    return sum(s.days for s in segments if not s.is_trial)
