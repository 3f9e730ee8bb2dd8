"""What one subscription may use of one feature right now (SPEC 9): pure functions.

The plan version in force (or pinned) lists the feature; an override in force on the
watermark's local day replaces the plan's value. A limit feature compares the meter's period
quantity so far with its limit: a hard limit denies once reached, a soft one stays allowed
(the usage over it is billed). A feature the plan does not list is denied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from orchestration.catalog.models import (
    EntitlementOverride,
    Feature,
    LimitEntitlement,
    PlanVersion,
    Subscription,
)


@dataclass(frozen=True)
class Grant:
    """The feature's terms for the subscription: granted or not, and the limit if any."""

    granted: bool
    limit: Decimal | None = None
    soft: bool = False


@dataclass(frozen=True)
class Entitlement:
    has_access: bool
    limit: Decimal | None
    used: Decimal | None
    remaining: Decimal | None
    soft: bool


def grant_of(
    feature: Feature, version: PlanVersion | None, subscription: Subscription, day: date
) -> Grant:
    listed = None if version is None else version.entitlements.get(feature.code)
    grant = _plan_grant(listed)
    override = override_in_force(subscription, feature.code, day)
    return grant if override is None else _overridden(grant, override)


def _plan_grant(value: bool | LimitEntitlement | None) -> Grant:
    if value is None or value is False:
        return Grant(False)
    if value is True:
        return Grant(True)
    return Grant(True, value.limit, value.soft)


def override_in_force(
    subscription: Subscription, feature: str, day: date
) -> EntitlementOverride | None:
    # validation refuses overlapping overrides of one feature: at most one is in force
    for override in subscription.entitlement_overrides:
        if override.feature == feature and override.in_force(day):
            return override
    return None


def _overridden(grant: Grant, override: EntitlementOverride) -> Grant:
    if override.enabled is False:
        return Grant(False)
    granted = grant.granted or override.enabled is True or override.limit is not None
    limit = override.limit if override.limit is not None else grant.limit
    soft = override.soft if override.soft is not None else grant.soft
    return Grant(granted, limit if granted else None, soft if granted else False)


def evaluate(feature: Feature, grant: Grant, used: Decimal | None) -> Entitlement:
    """The answer for one feature given what was used of its meter (None: boolean)."""
    if feature.type == "boolean":
        return Entitlement(grant.granted, None, None, None, False)
    used = used if used is not None else Decimal(0)
    if not grant.granted:
        return Entitlement(False, None, used, None, False)
    if grant.limit is None:
        return Entitlement(True, None, used, None, grant.soft)
    remaining = max(Decimal(0), grant.limit - used)
    allowed = grant.soft or used < grant.limit
    return Entitlement(allowed, grant.limit, used, remaining, grant.soft)


def generosity(answer: Entitlement) -> tuple:
    """How much an answer gives, to pick one for a customer with several active
    subscriptions: access first, then no limit over a limit, then the most remaining."""
    unlimited = answer.has_access and answer.limit is None
    return (answer.has_access, unlimited, answer.remaining or Decimal(0))
