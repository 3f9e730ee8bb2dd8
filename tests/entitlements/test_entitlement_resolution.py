"""What a subscription may use (SPEC 9), from the catalog and what it used: pure functions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from orchestration.billing.entitlements.resolve import evaluate, grant_of
from orchestration.billing.entitlements.snapshot import (
    PeriodUsage,
    build_snapshot,
    without_daily,
)
from orchestration.billing.entitlements.windows import current_periods
from orchestration.catalog.models import Catalog

CATALOG = Catalog.model_validate(
    {
        "meters": [{"code": "emails", "event_name": "email.sent", "aggregation": "count"}],
        "features": [
            {"code": "sso", "type": "boolean"},
            {"code": "emails", "type": "limit", "meter": "emails"},
            {"code": "audit", "type": "boolean"},
        ],
        "plans": [
            {
                "code": "pro",
                "currency": "USD",
                "interval": "month",
                "versions": [
                    {
                        "version": 1,
                        "effective_from": "2026-01-01",
                        "entitlements": {"sso": True, "emails": {"limit": "100", "soft": True}},
                    },
                    {
                        "version": 2,
                        "effective_from": "2026-10-15",
                        "entitlements": {"emails": {"limit": "50"}},
                    },
                ],
            }
        ],
        "customers": [
            {"id": "acme", "timezone": "America/New_York"},
            {"id": "acme-lab", "parent_id": "acme"},
            {"id": "idle"},
        ],
        "subscriptions": [
            {
                "id": "sub_acme",
                "customer_id": "acme",
                "plan": "pro",
                "start_date": "2026-03-15",
                "pin_version": True,
                "entitlement_overrides": [
                    {"feature": "emails", "limit": "300", "effective_from": "2026-10-10",
                     "effective_to": "2026-10-20"},
                    {"feature": "sso", "enabled": False, "effective_from": "2026-11-01"},
                    {"feature": "audit", "enabled": True, "effective_from": "2026-10-01"},
                ],
            }
        ],
    }
)  # fmt: skip
SUB = CATALOG.subscriptions[0]
PINNED = CATALOG.plan("pro").versions[0]
FEATURES = {f.code: f for f in CATALOG.features}


def _answer(feature: str, day: str, used: str | None):
    grant = grant_of(FEATURES[feature], PINNED, SUB, date.fromisoformat(day))
    return evaluate(FEATURES[feature], grant, None if used is None else Decimal(used))


def test_a_soft_limit_stays_allowed_over_it_and_remaining_stops_at_zero():
    answer = _answer("emails", "2026-10-05", "130")
    assert (answer.has_access, answer.limit, answer.remaining, answer.soft) == (
        True, Decimal("100"), Decimal(0), True,
    )  # fmt: skip


def test_an_override_replaces_the_limit_and_keeps_the_plans_soft_while_in_force():
    assert _answer("emails", "2026-10-12", "130").limit == Decimal("300")
    assert _answer("emails", "2026-10-12", "130").soft is True
    assert _answer("emails", "2026-10-20", "130").limit == Decimal("100")  # effective_to: out


def test_a_hard_limit_denies_once_reached():
    hard = FEATURES["emails"]
    grant = grant_of(hard, CATALOG.plan("pro").versions[1], SUB.model_copy(update={
        "entitlement_overrides": []}), date(2026, 10, 16))  # fmt: skip
    assert evaluate(hard, grant, Decimal("49")).has_access is True
    assert evaluate(hard, grant, Decimal("50")).has_access is False


def test_booleans_unlisted_features_and_enabled_overrides():
    assert _answer("sso", "2026-10-05", None).has_access is True
    assert _answer("sso", "2026-11-02", None).has_access is False  # enabled: false
    assert _answer("audit", "2026-09-30", None).has_access is False  # not in the plan
    assert _answer("audit", "2026-10-01", None).has_access is True  # enabled: true
    boolean = _answer("sso", "2026-10-05", None)
    assert (boolean.limit, boolean.used, boolean.remaining) == (None, None, None)


def test_the_snapshot_uses_the_customers_local_period_and_answers_for_sub_accounts():
    # 2026-11-01 03:00 UTC is still October 31 in New York: the October period
    as_of = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
    (period,) = current_periods(CATALOG, as_of)
    assert (period.period.start, period.period.end) == (date(2026, 10, 1), date(2026, 11, 1))
    usage = {period.window_id: PeriodUsage(quantities={"emails": (Decimal("120"), 120)})}
    snapshot = build_snapshot(CATALOG, [period], usage, as_of, as_of)
    lab = snapshot["customers"]["acme-lab"]["entitlements"]["emails"]
    assert (lab["customer_id"], lab["used"], lab["remaining"], lab["subscription_id"]) == (
        "acme-lab", "120", "0", "sub_acme",
    )  # fmt: skip
    idle = snapshot["customers"]["idle"]["entitlements"]["sso"]
    assert (idle["has_access"], idle["subscription_id"], idle["period_start"]) == (
        False, None, None,
    )  # fmt: skip
    assert snapshot["as_of"] == "2026-11-01T03:00:00Z"


def test_the_published_form_is_the_document_built_without_days():
    as_of = datetime(2026, 10, 20, tzinfo=UTC)
    (period,) = current_periods(CATALOG, as_of)
    usage = {
        period.window_id: PeriodUsage(
            quantities={"emails": (Decimal("7"), 7)},
            daily={
                "emails": [(date(2026, 10, 2), Decimal("3")), (date(2026, 10, 1), Decimal("4"))]
            },
        )
    }
    charted = build_snapshot(CATALOG, [period], usage, as_of, as_of, with_daily=True)
    (meter,) = charted["customers"]["acme"]["usage"]["subscriptions"][0]["meters"]
    assert meter["daily"] == [
        {"date": "2026-10-01", "quantity": "4"},
        {"date": "2026-10-02", "quantity": "3"},
    ]
    assert without_daily(charted) == build_snapshot(CATALOG, [period], usage, as_of, as_of)
    assert "daily" in meter  # the pages' document is left as it was
