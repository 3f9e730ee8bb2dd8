"""Readings and notifications shared by the alert and webhook tests."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from orchestration.billing.alerts import AlertReading, Outbox, notifications_due

SECRET = "whsec_test_Zq8v3NeverInLogs_4f1d9"
OCTOBER = date(2026, 10, 1)
NOVEMBER = date(2026, 11, 1)


def spend(
    value: str,
    *,
    period: date = OCTOBER,
    subscription: str = "sub_acme_pro",
    thresholds: tuple[str, ...] = ("50.00", "80.00", "100.00"),
) -> AlertReading:
    return AlertReading(
        alert="spend_watch",
        customer_id="acme",
        subscription_id=subscription,
        period_start=period,
        metric="spend",
        meter=None,
        value=Decimal(value),
        value_text=value,
        thresholds=thresholds,
    )


def usage(value: str, *, period: date = OCTOBER) -> AlertReading:
    return AlertReading(
        alert="tokens_high",
        customer_id="acme",
        subscription_id="sub_acme_pro",
        period_start=period,
        metric="usage",
        meter="tokens",
        value=Decimal(value),
        value_text=value,
        thresholds=("1000000",),
    )


def queue(outbox: Outbox, *readings: AlertReading) -> list:
    due = notifications_due(readings, outbox.fired())
    assert outbox.enqueue(due) == len(due)
    return due
