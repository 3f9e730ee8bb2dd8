"""Rules that tie features, entitlements, overrides and alerts to the rest of the catalog
(SPEC 9). Each yields (path, message) like validation.py, which calls them."""

from __future__ import annotations

from collections.abc import Iterator

from orchestration.catalog.models import Catalog, EntitlementOverride, Feature, LimitEntitlement

Problem = tuple[tuple, str]


def entitlement_problems(catalog: Catalog) -> Iterator[Problem]:
    features = {f.code: f for f in catalog.features}
    yield from _features(catalog)
    yield from _plan_entitlements(catalog, features)
    yield from _overrides(catalog, features)
    yield from _alerts(catalog)


def _features(catalog: Catalog) -> Iterator[Problem]:
    meters = {m.code for m in catalog.meters}
    for i, feature in enumerate(catalog.features):
        if feature.meter is not None and feature.meter not in meters:
            yield ("features", i, "meter"), f"unknown meter {feature.meter!r}"


def _plan_entitlements(catalog: Catalog, features: dict[str, Feature]) -> Iterator[Problem]:
    for p, plan in enumerate(catalog.plans):
        for v, version in enumerate(plan.versions):
            for code, value in version.entitlements.items():
                at = ("plans", p, "versions", v, "entitlements", code)
                feature = features.get(code)
                if feature is None:
                    yield at, f"unknown feature {code!r} (declare it under features:)"
                elif feature.type == "boolean" and isinstance(value, LimitEntitlement):
                    yield at, f"{code!r} is a boolean feature: give true or false, not a limit"


def _overrides(catalog: Catalog, features: dict[str, Feature]) -> Iterator[Problem]:
    for s, sub in enumerate(catalog.subscriptions):
        seen: dict[str, list[tuple[int, EntitlementOverride]]] = {}
        for o, override in enumerate(sub.entitlement_overrides):
            at = ("subscriptions", s, "entitlement_overrides", o)
            feature = features.get(override.feature)
            if feature is None:
                yield (*at, "feature"), f"unknown feature {override.feature!r}"
            elif feature.type == "boolean" and (override.limit, override.soft) != (None, None):
                yield (*at, "feature"), f"{feature.code!r} is a boolean feature: use enabled"
            yield from _inside_subscription(override, sub.start_date, sub.end_date, at)
            for other_index, other in seen.get(override.feature, []):
                if _overlap(override, other):
                    yield (
                        (*at, "effective_from"),
                        f"overlaps entitlement_overrides[{other_index}] for the same feature: "
                        "which one is in force would be undefined",
                    )
            seen.setdefault(override.feature, []).append((o, override))


def _inside_subscription(override, start, end, at: tuple) -> Iterator[Problem]:
    if override.effective_from < start or (end is not None and override.effective_from >= end):
        yield (*at, "effective_from"), "the override starts outside the subscription's dates"
    until = override.effective_to
    if until is not None and end is not None and until > end:
        yield (*at, "effective_to"), "the override ends after the subscription's end_date"


def _overlap(a: EntitlementOverride, b: EntitlementOverride) -> bool:
    a_before_b = a.effective_to is not None and a.effective_to <= b.effective_from
    b_before_a = b.effective_to is not None and b.effective_to <= a.effective_from
    return not (a_before_b or b_before_a)


def _alerts(catalog: Catalog) -> Iterator[Problem]:
    meters = {m.code for m in catalog.meters}
    plans = {p.code for p in catalog.plans}
    customers = {c.id for c in catalog.customers}
    for i, alert in enumerate(catalog.alerts):
        if alert.plan is not None and alert.plan not in plans:
            yield ("alerts", i, "plan"), f"unknown plan {alert.plan!r}"
        if alert.customer_id is not None and alert.customer_id not in customers:
            yield ("alerts", i, "customer_id"), f"unknown customer {alert.customer_id!r}"
        if alert.meter is not None and alert.meter not in meters:
            yield ("alerts", i, "meter"), f"unknown meter {alert.meter!r}"
