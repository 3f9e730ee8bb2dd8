"""Which step is due (pure): the days, the amount owed after credit notes, what stops dunning,
and what happens when several steps are due at once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from orchestration.billing.dunning import (
    ReceivableState,
    Step,
    closed_reason,
    dunning_steps,
    plan_dunning,
    steps_due,
)
from orchestration.catalog.models import Dunning

SETTINGS = Dunning.model_validate({"from": "billing@example.com"})  # 1, 7, 14; final on 30
STEPS = dunning_steps(SETTINGS)
DUE = datetime(2026, 11, 15, 18, 30, tzinfo=UTC)  # late in the day: day 1 is still the 16th


def state(**changes) -> ReceivableState:
    values = dict(
        invoice_id="inv_1", number="MB-2026-000001", customer_id="acme", currency="USD",
        stripe_status="open", ledger_status="finalized", collection_method="send_invoice",
        total=Decimal("100.00"), ledger_amount_due=Decimal("100.00"), amount_paid=Decimal(0),
        due_date=DUE, pulled_at=DUE,
    )  # fmt: skip
    values.update(changes)
    return ReceivableState(**values)


def test_steps_come_from_the_catalog_in_day_order():
    assert dunning_steps(SETTINGS) == (
        Step("reminder_1", 1),
        Step("reminder_7", 7),
        Step("reminder_14", 14),
        Step("final_notice", 30, final=True),
    )
    only_final = Dunning.model_validate({"from": "b@e.co", "reminder_days": []})
    assert dunning_steps(only_final) == (Step("final_notice", 30, final=True),)
    no_final = Dunning.model_validate({"from": "b@e.co", "final_notice_days": None})
    assert [s.name for s in dunning_steps(no_final)] == ["reminder_1", "reminder_7", "reminder_14"]


@pytest.mark.parametrize(
    ("days", "decided", "send", "skip"),
    [
        (0, {}, None, []),
        (1, {}, "reminder_1", []),
        (6, {"reminder_1": 1}, None, []),
        (7, {"reminder_1": 1}, "reminder_7", []),
        (7, {"reminder_1": 1, "reminder_7": 7}, None, []),
        (10, {}, "reminder_7", ["reminder_1"]),  # a missed week: the latest only
        (45, {"reminder_1": 1}, "final_notice", ["reminder_7", "reminder_14"]),
        (45, {"final_notice": 30}, None, []),
        # a step the catalog added later never reaches behind one already decided
        (9, {"reminder_7": 7}, None, []),
        (14, {"reminder_7": 7}, "reminder_14", []),
    ],
)
def test_steps_due(days, decided, send, skip):
    step, skipped = steps_due(STEPS, days, decided)
    assert (step.name if step else None, [s.name for s in skipped]) == (send, skip)


def test_days_overdue_count_utc_dates_from_the_due_date():
    s = state()
    assert s.overdue_from == date(2026, 11, 15)
    assert s.days_overdue(date(2026, 11, 15)) == 0
    assert s.days_overdue(date(2026, 11, 16)) == 1
    assert s.days_overdue(date(2026, 11, 1)) == 0  # not due yet: never negative


def test_an_automatic_charge_counts_from_its_first_failure_only():
    s = state(collection_method="charge_automatically", due_date=None)
    assert s.overdue_from is None and s.days_overdue(date(2027, 1, 1)) == 0
    failed = state(collection_method="charge_automatically", due_date=None, first_failed_at=DUE)
    assert failed.days_overdue(date(2026, 11, 22)) == 7


@pytest.mark.parametrize(
    ("changes", "owed"),
    [
        ({}, "100.00"),
        ({"amount_paid": Decimal("40.00")}, "60.00"),
        ({"reduced_due": Decimal("30.00")}, "70.00"),
        ({"amount_paid": Decimal("40.00"), "reduced_due": Decimal("60.00")}, "0.00"),
        ({"reduced_due": Decimal("150.00")}, "0"),  # never below 0
        ({"refunded": Decimal("20.00"), "to_wallet": Decimal("5.00")}, "100.00"),
        ({"ledger_amount_due": Decimal("80.00")}, "80.00"),  # paid credits drawn on it
    ],
)
def test_amount_due_after_payments_and_credit_notes(changes, owed):
    amount = state(**changes).amount_due
    assert isinstance(amount, Decimal) and amount == Decimal(owed)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({}, None),
        ({"stripe_status": "paid", "amount_paid": Decimal("100.00")}, "paid"),
        ({"stripe_status": "void"}, "void"),
        ({"ledger_status": "void"}, "void"),  # voided in the ledger, not yet in Stripe
        ({"reduced_due": Decimal("100.00")}, "credited in full"),
        ({"amount_paid": Decimal("100.00")}, "paid"),  # paid, status not pulled yet
        ({"stripe_status": "uncollectible"}, "uncollectible in Stripe"),
        ({"stripe_status": "draft"}, "draft in Stripe"),
        ({"reduced_due": Decimal("99.01")}, "owes less than min_amount (1.00)"),
        ({"reduced_due": Decimal("99.00")}, None),  # exactly min_amount: still reminded
    ],
)
def test_closed_reason(changes, reason):
    assert closed_reason(state(**changes), SETTINGS.min_amount) == reason


def test_the_plan_sends_cancels_and_holds():
    now = DUE + timedelta(days=10)
    states = [
        state(invoice_id="a", pulled_at=now),
        state(invoice_id="paid", stripe_status="paid", pulled_at=now),
        state(invoice_id="stale", pulled_at=now - timedelta(hours=37)),
        state(invoice_id="fresh", pulled_at=now - timedelta(hours=35)),
        state(invoice_id="nomail", customer_id="nomail", pulled_at=now),
        state(invoice_id="early", due_date=now, pulled_at=now),
    ]
    plan = plan_dunning(states, SETTINGS, {"fresh": {"reminder_7": 7}}, {"acme": ["a@x.co"]}, now)
    assert [(d.state.invoice_id, d.send.name, [s.name for s in d.skip]) for d in plan.due] == [
        ("a", "reminder_7", ["reminder_1"]),
    ]
    assert plan.cancel == (("paid", "paid"),)
    assert [(h.state.invoice_id, h.reason) for h in plan.held] == [
        ("stale", "payment status out of date: pull it from Stripe"),
        ("nomail", "customer nomail has no email"),
    ]
    assert plan.sendable == {"a", "fresh", "early"}
    assert plan.due[0].recipients == ("a@x.co",)
