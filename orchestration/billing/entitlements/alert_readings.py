"""The alerts' readings (SPEC 9) from the published snapshot: each alert's value for each
subscription it watches in its current period, the period's usage of a meter (as
entitlements count it) or the total of the draft that bills the period."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from orchestration.billing.alerts.firing import AlertReading
from orchestration.catalog.models import Alert, Catalog


def alert_readings(catalog: Catalog, snapshot: dict[str, Any]) -> list[AlertReading]:
    readings = []
    for customer_id, entry in sorted(snapshot["customers"].items()):
        if catalog.billing_customer(customer_id).id != customer_id:
            continue  # a sub-account's entry repeats its parent's periods
        for period in entry["usage"]["subscriptions"]:
            readings += [
                reading
                for alert in catalog.alerts
                if _watches(alert, customer_id, period)
                and (reading := _reading(alert, customer_id, period)) is not None
            ]
    return readings


def _watches(alert: Alert, customer_id: str, period: dict[str, Any]) -> bool:
    return (alert.plan is None or alert.plan == period["plan"]) and (
        alert.customer_id is None or alert.customer_id == customer_id
    )


def _reading(alert: Alert, customer_id: str, period: dict[str, Any]) -> AlertReading | None:
    if alert.metric == "spend":
        draft = period["draft"]
        if draft is None:
            return None  # no draft bills the period yet: nothing spent that anyone can see
        text = draft["total"]
    else:
        meters = {m["meter"]: m["quantity"] for m in period["meters"]}
        text = meters.get(alert.meter, "0")
    return AlertReading(
        alert=alert.code,
        customer_id=customer_id,
        subscription_id=period["subscription_id"],
        period_start=date.fromisoformat(period["period_start"]),
        metric=alert.metric,
        meter=alert.meter,
        value=Decimal(text),
        value_text=text,
        thresholds=tuple(str(t) for t in alert.thresholds),
    )
