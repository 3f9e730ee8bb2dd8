"""Which alert thresholds fire (SPEC 9). Pure functions: readings and what already fired in,
notifications out; the outbox (outbox.py) remembers what fired, the webhooks deliver.

- A threshold is crossed when the reading's value >= the threshold.
- Each threshold fires at most once per (alert, subscription, period_start). A reading that
  jumps across several unfired thresholds gives ONE notification, named after the highest
  of them and listing all of them ascending.
- A new period_start re-arms every threshold: only the same period's firings count.
- Thresholds keep the text they were written with in the catalog ("80.00" stays "80.00"),
  in the body and in the idempotency key, so a key never changes with formatting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Set
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import TypeAlias

__all__ = [
    "METRICS",
    "AlertReading",
    "FiredThreshold",
    "Notification",
    "notification_key",
    "notifications_due",
]

METRICS = frozenset({"usage", "spend"})
KEY_PREFIX = "mbalert_"

# (alert, subscription_id, period_start, threshold_text)
FiredThreshold: TypeAlias = tuple[str, str, date, str]


def _decimal(text: str, what: str) -> Decimal:
    try:
        number = Decimal(text)
    except (InvalidOperation, TypeError, ValueError):
        raise ValueError(f"{what} is not a decimal string: {text!r}") from None
    if not number.is_finite():
        raise ValueError(f"{what} is not a finite decimal: {text!r}")
    return number


@dataclass(frozen=True)
class AlertReading:
    """One alert's current value for one subscription period, as the caller measured it.

    `value_text` is the caller's formatting of `value` (money to the currency's minor units,
    a meter quantity as the warehouse holds it): the body carries it as is, so the amount a
    receiver sees is exactly the one on the invoice draft.
    """

    alert: str
    customer_id: str
    subscription_id: str
    period_start: date
    metric: str
    meter: str | None
    value: Decimal
    value_text: str
    thresholds: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"alert {self.alert}: metric must be usage or spend: {self.metric!r}")
        if (self.metric == "usage") != (self.meter is not None):
            raise ValueError(f"alert {self.alert}: a usage alert names a meter, a spend one none")
        if not isinstance(self.value, Decimal) or not self.value.is_finite():
            # a float would make "value >= threshold" depend on binary rounding
            raise TypeError(f"alert {self.alert}: value must be a finite Decimal")
        _decimal(self.value_text, f"alert {self.alert}: value_text")
        if isinstance(self.period_start, datetime) or not isinstance(self.period_start, date):
            # a datetime would put a time of day into the key and the body
            raise TypeError(f"alert {self.alert}: period_start must be a date")
        if not self.thresholds:
            raise ValueError(f"alert {self.alert}: no thresholds")
        for threshold in self.thresholds:
            _decimal(threshold, f"alert {self.alert}: threshold")

    def crossed(self) -> list[str]:
        """Every threshold at or below the value, ascending by amount, each text once."""
        distinct = dict.fromkeys(self.thresholds)
        reached = [t for t in distinct if self.value >= Decimal(t)]
        return sorted(reached, key=Decimal)

    def fired_key(self, threshold: str) -> FiredThreshold:
        return (self.alert, self.subscription_id, self.period_start, threshold)


def notification_key(alert: str, subscription_id: str, period_start: date, threshold: str) -> str:
    """The Idempotency-Key: the same for every attempt, every re-run and every process, so a
    receiver can drop a re-send after a crash between its answer and our record of it."""
    joined = "\x1f".join((alert, subscription_id, period_start.isoformat(), threshold))
    return KEY_PREFIX + hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


@dataclass(frozen=True)
class Notification:
    key: str
    alert: str
    customer_id: str
    subscription_id: str
    period_start: date
    metric: str
    meter: str | None
    value_text: str
    threshold: str
    thresholds_crossed: tuple[str, ...]

    def body(self) -> bytes:
        """The JSON POSTed (SPEC 9). Sorted keys and fixed separators: the outbox stores these
        bytes once and every re-send, in any process, signs and sends the same bytes."""
        payload: dict[str, object] = {
            "type": "alert.triggered",
            "alert": self.alert,
            "customer_id": self.customer_id,
            "subscription_id": self.subscription_id,
            "period_start": self.period_start.isoformat(),
            "metric": self.metric,
            "value": self.value_text,
            "threshold": self.threshold,
            "thresholds_crossed": list(self.thresholds_crossed),
        }
        if self.metric == "usage":
            payload["meter"] = self.meter
        return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")

    def fired(self) -> tuple[FiredThreshold, ...]:
        """The thresholds this notification uses up for its period."""
        return tuple(
            (self.alert, self.subscription_id, self.period_start, threshold)
            for threshold in self.thresholds_crossed
        )


def _notification(reading: AlertReading, crossed: list[str]) -> Notification:
    highest = crossed[-1]
    return Notification(
        key=notification_key(reading.alert, reading.subscription_id, reading.period_start, highest),
        alert=reading.alert,
        customer_id=reading.customer_id,
        subscription_id=reading.subscription_id,
        period_start=reading.period_start,
        metric=reading.metric,
        meter=reading.meter,
        value_text=reading.value_text,
        threshold=highest,
        thresholds_crossed=tuple(crossed),
    )


def notifications_due(
    readings: Iterable[AlertReading], fired: Set[FiredThreshold]
) -> list[Notification]:
    """One notification per reading that crosses thresholds not yet fired for its period.

    Readings are taken in order and each one's firings count for the next, so two readings
    of the same subscription period in one batch never fire a threshold twice.
    """
    seen = set(fired)
    due: list[Notification] = []
    for reading in readings:
        fresh = [t for t in reading.crossed() if reading.fired_key(t) not in seen]
        if not fresh:
            continue
        seen.update(reading.fired_key(t) for t in fresh)
        due.append(_notification(reading, fresh))
    return due
