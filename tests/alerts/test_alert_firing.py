"""Which thresholds fire (SPEC 9): once per subscription period, one notification per jump
naming the highest crossed, re-armed each period; the exact body and a stable key."""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from alert_fixtures import NOVEMBER, OCTOBER, spend, usage
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from orchestration.billing.alerts import (
    AlertReading,
    Notification,
    Outbox,
    notification_key,
    notifications_due,
)

D = Decimal


def fire(readings, fired: set) -> list[Notification]:
    """notifications_due, then remember what fired, as the outbox would."""
    due = notifications_due(readings, fired)
    for notification in due:
        fired.update(notification.fired())
    return due


def test_a_jump_across_thresholds_sends_one_notification_naming_the_highest():
    [only] = notifications_due([spend("130.00")], set())
    assert only.threshold == "100.00"
    assert only.thresholds_crossed == ("50.00", "80.00", "100.00")
    assert only.key == notification_key("spend_watch", "sub_acme_pro", OCTOBER, "100.00")
    assert only.value_text == "130.00"


def test_the_body_is_specs_example_byte_for_byte_deterministic():
    [only] = notifications_due([spend("130.00", thresholds=("50.00", "100.00"))], set())
    body = only.body()
    assert json.loads(body) == {
        "type": "alert.triggered",
        "alert": "spend_watch",
        "customer_id": "acme",
        "subscription_id": "sub_acme_pro",
        "period_start": "2026-10-01",
        "metric": "spend",
        "value": "130.00",
        "threshold": "100.00",
        "thresholds_crossed": ["50.00", "100.00"],
    }
    assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    again = notifications_due([spend("130.00", thresholds=("50.00", "100.00"))], set())
    assert again[0].body() == body and again[0].key == only.key


def test_a_usage_alert_names_its_meter_a_spend_alert_none():
    [tokens] = notifications_due([usage("1000000")], set())
    assert json.loads(tokens.body())["meter"] == "tokens"
    assert json.loads(tokens.body())["metric"] == "usage"
    [money] = notifications_due([spend("50.00")], set())
    assert "meter" not in json.loads(money.body())


def test_the_same_value_again_fires_nothing_and_a_higher_one_only_the_new_threshold():
    fired: set = set()
    [first] = fire([spend("85.00")], fired)
    assert (first.threshold, first.thresholds_crossed) == ("80.00", ("50.00", "80.00"))
    assert fire([spend("85.00")], fired) == []
    assert fire([spend("99.99")], fired) == []
    [second] = fire([spend("100.00")], fired)  # at the threshold is crossed
    assert (second.threshold, second.thresholds_crossed) == ("100.00", ("100.00",))
    assert second.key != first.key
    assert fire([spend("1000.00")], fired) == []


def test_a_new_period_re_arms_every_threshold():
    fired: set = set()
    fire([spend("130.00")], fired)
    [november] = fire([spend("60.00", period=NOVEMBER)], fired)
    assert november.thresholds_crossed == ("50.00",)
    assert november.period_start == NOVEMBER
    # and nothing of November counts for another subscription or back in October
    assert fire([spend("130.00", subscription="sub_other")], fired)[0].thresholds_crossed == (
        "50.00",
        "80.00",
        "100.00",
    )
    assert fire([spend("130.00")], fired) == []


def test_thresholds_keep_their_text_and_are_ordered_by_amount():
    [only] = notifications_due([spend("10", thresholds=("9.00", "10.0", "1e3"))], set())
    assert only.thresholds_crossed == ("9.00", "10.0")  # not the string order "10.0" < "9.00"
    assert only.threshold == "10.0"
    assert only.key == notification_key("spend_watch", "sub_acme_pro", OCTOBER, "10.0")
    assert only.key != notification_key("spend_watch", "sub_acme_pro", OCTOBER, "10.00")
    assert json.loads(only.body())["thresholds_crossed"] == ["9.00", "10.0"]


def test_two_readings_of_one_period_in_one_batch_never_fire_a_threshold_twice():
    due = notifications_due([spend("60.00"), spend("90.00"), spend("90.00")], set())
    assert [n.thresholds_crossed for n in due] == [("50.00",), ("80.00",)]


def test_the_fired_set_given_is_honoured_and_left_unchanged():
    fired = {("spend_watch", "sub_acme_pro", OCTOBER, "50.00")}
    [only] = notifications_due([spend("130.00")], fired)
    assert only.thresholds_crossed == ("80.00", "100.00")
    assert fired == {("spend_watch", "sub_acme_pro", OCTOBER, "50.00")}


def test_keys_are_the_documented_hash():
    key = notification_key("spend_watch", "sub_acme_pro", date(2026, 10, 1), "100.00")
    assert key.startswith("mbalert_") and len(key) == len("mbalert_") + 32
    assert key == notification_key("spend_watch", "sub_acme_pro", date(2026, 10, 1), "100.00")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"value": 130.0}, TypeError),  # a float: never
        ({"value": D("NaN")}, TypeError),
        ({"metric": "seats"}, ValueError),
        ({"meter": "tokens"}, ValueError),  # a spend alert has no meter
        ({"thresholds": ()}, ValueError),
        ({"thresholds": ("80,00",)}, ValueError),
        ({"value_text": "lots"}, ValueError),
        ({"period_start": "2026-10-01"}, TypeError),
    ],
)
def test_a_malformed_reading_is_refused(change, error):
    with pytest.raises(error):
        replace(spend("1.00"), **change)


def test_a_usage_reading_without_a_meter_is_refused():
    with pytest.raises(ValueError):
        replace(usage("1"), meter=None)


# --- the property -----------------------------------------------------------------------------

AMOUNTS = st.decimals(min_value=0, max_value=10**7, places=2, allow_nan=False)
THRESHOLD_TEXTS = st.lists(AMOUNTS, min_size=1, max_size=6, unique=True).flatmap(
    # the same amounts written in different ways: texts must survive as written
    lambda amounts: st.tuples(
        *(st.sampled_from([f"{a:f}", f"{a.normalize():f}", f"{a:.3f}"]) for a in sorted(amounts))
    )
)
STEPS = st.lists(st.decimals(min_value=0, max_value=3 * 10**6, places=2), min_size=1, max_size=12)


def _increasing(steps: list[Decimal]) -> list[Decimal]:
    total, values = D(0), []
    for step in steps:
        total += step
        values.append(total)
    return values


def _reading(value: Decimal, thresholds: tuple[str, ...]) -> AlertReading:
    return replace(spend("0"), value=value, value_text=f"{value:f}", thresholds=thresholds)


def _assert_fired_exactly_once(sent: list[Notification], thresholds, final: Decimal) -> None:
    crossed = [t for n in sent for t in n.thresholds_crossed]
    assert sorted(crossed) == sorted(t for t in set(thresholds) if D(t) <= final)
    assert len(crossed) == len(set(crossed))  # each once overall
    assert len({n.key for n in sent}) == len(sent)  # keys unique
    for n in sent:
        assert n.threshold == n.thresholds_crossed[-1]
        assert list(n.thresholds_crossed) == sorted(n.thresholds_crossed, key=D)
        assert D(n.threshold) <= D(n.value_text)


@settings(max_examples=300, deadline=None, database=None)
@given(thresholds=THRESHOLD_TEXTS, steps=STEPS)
@example(thresholds=("80.00", "100.00"), steps=[D("130.00")])
@example(thresholds=("80.00", "100.00"), steps=[D("79.99"), D("0.01"), D(0), D("20.00")])
def test_every_threshold_up_to_the_final_value_fires_exactly_once(thresholds, steps):
    values, fired, sent = _increasing(steps), set(), []
    for value in values:
        due = fire([_reading(value, thresholds)], fired)
        assert len(due) <= 1
        sent += due
    _assert_fired_exactly_once(sent, thresholds, values[-1])


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(thresholds=THRESHOLD_TEXTS, steps=STEPS)
def test_the_outbox_fires_each_threshold_exactly_once_too(thresholds, steps):
    values = _increasing(steps)
    with tempfile.TemporaryDirectory() as folder:
        outbox = Outbox(Path(folder) / "outbox.sqlite")
        for value in values:
            outbox.enqueue_due([_reading(value, thresholds)])
            outbox.enqueue_due([_reading(value, thresholds)])  # a second check, same value
        sent = [_as_notification(row) for row in outbox.rows()]
    _assert_fired_exactly_once(sent, thresholds, values[-1])


def _as_notification(row) -> Notification:
    return Notification(
        key=row.key,
        alert=row.alert,
        customer_id=row.customer_id,
        subscription_id=row.subscription_id,
        period_start=row.period_start,
        metric=row.metric,
        meter=row.meter,
        value_text=row.value,
        threshold=row.threshold,
        thresholds_crossed=row.thresholds_crossed,
    )
