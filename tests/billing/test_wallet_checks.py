"""The wallet check's findings (SPEC 7): a balance below zero, and an invoice whose credits
differ from what its wallet drew, each named in one sentence."""

from datetime import date
from decimal import Decimal

from orchestration.billing.wallets.checks import draw_problems
from orchestration.billing.wallets.ledger import balance_problems


def entry(entry_type: str, grant_kind: str, amount: str, invoice_id=None, seq=1) -> dict:
    return {
        "close_month": "2026-10", "seq": seq, "entry_id": f"we_{seq}", "entry_type": entry_type,
        "customer_id": "acme", "grant_id": f"g_{grant_kind}", "grant_kind": grant_kind,
        "amount": Decimal(amount), "entry_date": date(2026, 10, 1), "invoice_id": invoice_id,
    }  # fmt: skip


LEDGER = [
    entry("grant", "promotional", "15.00", seq=1),
    entry("grant", "paid", "50.00", seq=2),
    entry("draw", "promotional", "-15.00", "inv_1", seq=3),
    entry("draw", "paid", "-18.00", "inv_1", seq=4),
]


def test_an_invoice_showing_exactly_its_draws_passes():
    credited = {"inv_1": ("acme", Decimal("15.00"), Decimal("18.00"))}
    assert draw_problems(LEDGER, credited) == []
    assert balance_problems(LEDGER) == []


def test_credits_on_an_invoice_that_its_wallet_did_not_draw_are_found():
    credited = {"inv_1": ("acme", Decimal("15.00"), Decimal("20.00"))}
    assert draw_problems(LEDGER, credited) == [
        "invoice inv_1 (acme): paid credits 20.00 on the invoice but 18.00 drawn in the "
        "wallet ledger"
    ]


def test_a_draw_on_an_invoice_that_shows_no_credits_is_found():
    assert draw_problems(LEDGER, {"inv_1": ("acme", Decimal(0), Decimal("18.00"))}) == [
        "invoice inv_1 (acme): promotional credits 0 on the invoice but 15.00 drawn in the "
        "wallet ledger"
    ]


def test_a_balance_below_zero_is_found_at_the_entry_that_took_it_there():
    overdrawn = [*LEDGER, entry("draw", "paid", "-40.00", "inv_2", seq=5)]
    (problem,) = balance_problems(overdrawn)
    assert problem.startswith("acme grant g_paid: balance -8.00")
    assert "we_5" in problem
