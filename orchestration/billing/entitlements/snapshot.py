"""The published document (publish.py) built from the current periods, what each used, and
the drafts that bill them: pure functions over rows the evaluation read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from orchestration.billing.entitlements.publish import FORMAT
from orchestration.billing.entitlements.resolve import (
    Entitlement,
    evaluate,
    generosity,
    grant_of,
)
from orchestration.billing.entitlements.windows import CurrentPeriod
from orchestration.billing.invoice_json import decimal_text
from orchestration.catalog.models import Catalog, Customer, Feature


@dataclass
class PeriodUsage:
    """What the warehouse says about one current period (one window)."""

    quantities: dict[str, tuple[Decimal, int]] = field(default_factory=dict)  # meter: (q, events)
    daily: dict[str, list[tuple[date, Decimal]]] = field(default_factory=dict)
    draft: dict[str, Any] | None = None


def iso_z(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_snapshot(
    catalog: Catalog,
    periods: list[CurrentPeriod],
    usage: dict[str, PeriodUsage],
    as_of: datetime | None,
    published_at: datetime,
    with_daily: bool = False,
) -> dict[str, Any]:
    """The published document; `with_daily` adds each meter's days (for the month-so-far
    pages only: 10,000 customers x 20 meters x 30 days would make the file 6M rows)."""
    by_customer: dict[str, list[CurrentPeriod]] = {}
    for period in periods:
        by_customer.setdefault(period.customer.id, []).append(period)
    customers = {}
    for customer in catalog.customers:
        payer = catalog.billing_customer(customer.id)
        mine = by_customer.get(payer.id, [])
        customers[customer.id] = _customer_entry(catalog, customer, mine, usage, as_of, with_daily)
    return {
        "format": FORMAT,
        "as_of": iso_z(as_of),
        "published_at": iso_z(published_at),
        "features": {f.code: _feature_doc(f) for f in catalog.features},
        "customers": customers,
    }


def without_daily(document: dict[str, Any]) -> dict[str, Any]:
    """A document built `with_daily`, as it is published: the same, without each meter's days
    (the answers are built once for both)."""
    customers = {}
    for customer_id, entry in document["customers"].items():
        usage = entry["usage"]
        subscriptions = [
            {**s, "meters": [{k: v for k, v in m.items() if k != "daily"} for m in s["meters"]]}
            for s in usage["subscriptions"]
        ]
        customers[customer_id] = {**entry, "usage": {**usage, "subscriptions": subscriptions}}
    return {**document, "customers": customers}


def _feature_doc(feature: Feature) -> dict[str, Any]:
    return {
        "code": feature.code,
        "name": feature.name,
        "type": feature.type,
        "meter": feature.meter,
    }


def _customer_entry(
    catalog, customer: Customer, periods, usage, as_of, with_daily: bool
) -> dict[str, Any]:
    entitlements = {
        f.code: _feature_answer(customer.id, f, periods, usage, as_of) for f in catalog.features
    }
    return {
        "customer_id": customer.id,
        "name": customer.name or customer.id,
        "currency": catalog.currency_of(catalog.billing_customer(customer.id)),
        "entitlements": entitlements,
        "usage": {
            "customer_id": customer.id,
            "as_of": iso_z(as_of),
            "subscriptions": [
                _period_usage(catalog, p, usage.get(p.window_id), with_daily) for p in periods
            ],
        },
    }


def used_of(period: CurrentPeriod, meter: str | None, usage: dict[str, PeriodUsage]):
    found = usage.get(period.window_id)
    if meter is None or found is None:
        return Decimal(0)
    return found.quantities.get(meter, (Decimal(0), 0))[0]


def _feature_answer(customer_id, feature, periods, usage, as_of) -> dict[str, Any]:
    answers: list[tuple[Entitlement, CurrentPeriod]] = []
    for period in periods:
        day = as_of.astimezone(_zone(period)).date() if as_of else period.period.start
        grant = grant_of(feature, period.version, period.subscription, day)
        used = used_of(period, feature.meter, usage) if feature.type == "limit" else None
        answers.append((evaluate(feature, grant, used), period))
    answer, period = max(
        answers,
        key=lambda pair: generosity(pair[0]),
        default=(Entitlement(False, None, None, None, False), None),
    )
    return {
        "customer_id": customer_id,
        "feature": feature.code,
        "type": feature.type,
        "has_access": answer.has_access,
        "limit": decimal_text(answer.limit),
        "used": decimal_text(answer.used),
        "remaining": decimal_text(answer.remaining),
        "soft": answer.soft,
        "subscription_id": period.subscription.id if period else None,
        "period_start": period.period.start.isoformat() if period else None,
        "period_end": period.period.end.isoformat() if period else None,
        "as_of": iso_z(as_of),
    }


def _zone(period: CurrentPeriod) -> ZoneInfo:
    return ZoneInfo(period.customer.timezone)


def _period_usage(catalog, period: CurrentPeriod, found: PeriodUsage | None, with_daily: bool):
    found = found or PeriodUsage()
    charged = {c.meter for c in period.version.charges} if period.version else set()
    shown = sorted(charged | {m for m, (_, events) in found.quantities.items() if events})
    return {
        "subscription_id": period.subscription.id,
        "plan": period.plan.code,
        "plan_name": period.plan.name or period.plan.code,
        "currency": period.plan.currency,
        "period_start": period.period.start.isoformat(),
        "period_end": period.period.end.isoformat(),
        "meters": [_meter_usage(catalog, code, found, with_daily) for code in shown],
        "draft": found.draft,
    }


def _meter_usage(catalog: Catalog, code: str, found: PeriodUsage, with_daily: bool):
    quantity, events = found.quantities.get(code, (Decimal(0), 0))
    meter = catalog.find_meter(code)
    shown = {
        "meter": code,
        "name": (meter.name if meter else None) or code,
        "quantity": decimal_text(quantity),
        "event_count": events,
    }
    if with_daily and code in found.daily:
        shown["daily"] = [
            {"date": day.isoformat(), "quantity": decimal_text(q)}
            for day, q in sorted(found.daily[code])
        ]
    return shown
