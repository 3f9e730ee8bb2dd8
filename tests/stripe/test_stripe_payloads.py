"""Pure parts: payload builders, idempotency keys, retry schedule, configuration."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from integrations.stripe.client import RetryPolicy, StripeConfig
from integrations.stripe.errors import StripeConfigError, SyncError
from integrations.stripe.payloads import (
    CREDITS_REF,
    MAX_ITEMS_PER_INVOICE,
    TAX_REF,
    CreditLine,
    credit_note_lines,
    credit_note_params,
    customer_params,
    finalize_params,
    from_minor_units,
    idempotency_key,
    invoice_item_params,
    invoice_params,
    metadata_query,
    plan_invoice,
)
from integrations.stripe.records import LedgerInvoice, LedgerLine
from integrations.stripe.status import receivable_from_stripe
from orchestration.catalog.models import Customer

USD = Customer(id="acme", name="Acme", email="ap@acme.test")
TOKYO = Customer(
    id="tokyo", timezone="Asia/Tokyo", collection_method="send_invoice", days_until_due=14
)


def line(line_id: str, amount: str, kind: str = "usage", quantity: str | None = "3") -> LedgerLine:
    return LedgerLine(
        line_id=line_id,
        position=1,
        kind=kind,
        description=f"line {line_id}",
        period_start=date(2026, 10, 1),
        period_end=date(2026, 11, 1),
        quantity=None if quantity is None else Decimal(quantity),
        amount=Decimal(amount),
    )


def invoice(currency: str, lines: list[LedgerLine], tax: str = "0", credits: str = "0"):
    subtotal = sum((item.amount for item in lines), Decimal(0))
    total = subtotal + Decimal(tax)
    return LedgerInvoice(
        invoice_id="inv_1",
        number="MB-2026-000001",
        close_month="2026-10",
        customer_id="acme",
        subscription_id="sub_1",
        currency=currency,
        period_start=date(2026, 10, 1),
        period_end=date(2026, 11, 1),
        subtotal=subtotal,
        tax_total=Decimal(tax),
        total=total,
        credits_applied=Decimal(credits),
        amount_due=total - Decimal(credits),
        status="finalized",
        lines=tuple(lines),
    )


@pytest.mark.parametrize(
    ("currency", "amount", "minor"),
    [
        ("USD", "120.50", 12050),
        ("USD", "-33.90", -3390),
        ("USD", "0.01", 1),
        ("JPY", "5603", 5603),
        ("KWD", "14.295", 14295),
        ("KWD", "-1.930", -1930),
    ],
)
def test_line_amounts_are_minor_units_of_their_currency(currency, amount, minor):
    plan = plan_invoice(invoice(currency, [line("l1", amount)]), USD)
    assert [item.amount_minor for item in plan.items] == [minor]
    assert plan.total_minor == minor


def test_tax_and_credits_become_items_so_stripe_totals_the_amount_due():
    inv = invoice("USD", [line("l1", "100.00"), line("l2", "-10.00", "discount")], "18.00", "5.00")
    plan = plan_invoice(inv, USD)
    assert [(i.ref, i.amount_minor) for i in plan.items] == [
        ("l1", 10000),
        ("l2", -1000),
        (TAX_REF, 1800),
        (CREDITS_REF, -500),
    ]
    assert plan.total_minor == 10300 == sum(i.amount_minor for i in plan.items)


def test_a_ledger_invoice_that_does_not_add_up_is_refused():
    inv = invoice("USD", [line("l1", "10.00")])
    broken = LedgerInvoice(**{**inv.__dict__, "subtotal": Decimal("11.00")})
    with pytest.raises(SyncError, match="MB-2026-000001 does not add up"):
        plan_invoice(broken, USD)


def test_an_amount_finer_than_the_minor_unit_is_refused_with_the_invoice_number():
    with pytest.raises(SyncError, match="MB-2026-000001.*not rounded"):
        plan_invoice(invoice("JPY", [line("l1", "10.5")]), USD)


def test_more_items_than_stripe_allows_is_refused_before_sending():
    lines = [line(f"l{i}", "1.00") for i in range(MAX_ITEMS_PER_INVOICE + 1)]
    with pytest.raises(SyncError, match="Stripe allows 250"):
        plan_invoice(invoice("USD", lines), USD)


def test_item_period_is_local_midnight_of_the_customer():
    plan = plan_invoice(invoice("JPY", [line("l1", "5")]), TOKYO)
    item = plan.items[0]
    # 2026-10-01T00:00+09:00 and 2026-11-01T00:00+09:00
    assert item.period_start == int(datetime(2026, 9, 30, 15, tzinfo=UTC).timestamp())
    assert item.period_end == int(datetime(2026, 10, 31, 15, tzinfo=UTC).timestamp())


def test_item_params_carry_our_ids_and_are_not_discountable():
    inv = invoice("KWD", [line("ln_9", "1.250", quantity="1250.5")])
    item = plan_invoice(inv, USD).items[0]
    params = invoice_item_params(item, inv, "cus_1", "in_1")
    assert params["amount"] == 1250
    assert params["currency"] == "kwd"
    assert params["discountable"] is False
    assert params["metadata"] == {
        "meterbook_invoice_id": "inv_1",
        "meterbook_line_id": "ln_9",
        "meterbook_kind": "usage",
        "meterbook_quantity": "1250.5",
    }


def test_invoice_params_send_invoice_gets_days_until_due_charge_does_not():
    inv = invoice("USD", [line("l1", "1.00")])
    charge = invoice_params(inv, USD, "cus_1")
    assert charge["collection_method"] == "charge_automatically"
    assert "days_until_due" not in charge
    assert charge["auto_advance"] is False
    assert charge["metadata"]["meterbook_invoice_id"] == "inv_1"
    assert charge["metadata"]["meterbook_invoice_number"] == "MB-2026-000001"
    send = invoice_params(inv, TOKYO, "cus_2")
    assert (send["collection_method"], send["days_until_due"]) == ("send_invoice", 14)
    default_days = Customer(id="x", collection_method="send_invoice")
    assert invoice_params(inv, default_days, "cus_3")["days_until_due"] == 30


def test_payloads_are_pure_same_records_same_payload():
    inv = invoice("USD", [line("l1", "1.00")])
    assert invoice_params(inv, USD, "cus_1") == invoice_params(inv, USD, "cus_1")
    assert customer_params(USD) == {
        "name": "Acme",
        "email": "ap@acme.test",
        "metadata": {"meterbook_customer_id": "acme"},
    }
    assert finalize_params(True) == {"auto_advance": True}


def test_idempotency_keys_are_deterministic_distinct_and_bounded():
    assert idempotency_key("item", "inv_1", "l1") == "meterbook-v1:item:inv_1:l1"
    assert idempotency_key("item", "inv_1", "l1") != idempotency_key("item", "inv_1", "l2")
    assert idempotency_key("item", "a:b", "c") != idempotency_key("item", "a", "b:c")
    long_key = idempotency_key("item", "i" * 200, "l" * 200)
    assert len(long_key) <= 255 and long_key == idempotency_key("item", "i" * 200, "l" * 200)
    assert idempotency_key("customer", "café").isascii()


def test_metadata_query_escapes_quotes():
    assert metadata_query("k", "acme") == "metadata['k']:'acme'"
    assert metadata_query("k", "o'brien\\x") == "metadata['k']:'o\\'brien\\\\x'"


def test_retry_delays_grow_and_are_capped():
    policy = RetryPolicy(max_attempts=6, base_delay=0.5, max_delay=3.0)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(StripeConfigError):
        RetryPolicy(max_attempts=0)


def test_config_from_env_needs_a_key_and_names_the_variable():
    with pytest.raises(StripeConfigError, match="STRIPE_API_KEY is not set"):
        StripeConfig.from_env({})
    config = StripeConfig.from_env({"STRIPE_API_KEY": "sk_test_x"})
    assert config.api_base == "https://api.stripe.com"
    assert "sk_test_x" not in repr(config)


@pytest.mark.parametrize(
    "base", ["http://stripe.example.com", "ftp://127.0.0.1", "https://api.stripe.com/v1", "nope"]
)
def test_config_refuses_a_base_that_would_leak_the_key_or_break_paths(base):
    with pytest.raises(StripeConfigError, match="STRIPE_API_BASE"):
        StripeConfig(api_key="sk_test_x", api_base=base)


def test_config_accepts_https_and_local_http():
    assert (
        StripeConfig(api_key="k", api_base="http://127.0.0.1:5/").api_base == "http://127.0.0.1:5"
    )
    assert StripeConfig(api_key="k", api_base="https://h.test").api_base == "https://h.test"


def test_minor_units_back_to_decimals():
    assert from_minor_units(12050, 2) == Decimal("120.50")
    assert from_minor_units(-1930, 3) == Decimal("-1.930")
    assert from_minor_units(5603, 0) == Decimal("5603")


def test_receivable_from_a_stripe_invoice():
    stripe_invoice = {
        "id": "in_1",
        "currency": "kwd",
        "status": "open",
        "collection_method": "send_invoice",
        "total": 17365,
        "amount_due": 17365,
        "amount_paid": 0,
        "amount_remaining": 17365,
        "attempt_count": 2,
        "next_payment_attempt": 1_800_000_000,
        "due_date": 1_790_000_000,
        "status_transitions": {"finalized_at": 1_780_000_000, "paid_at": None},
    }
    ours = {"invoice_id": "inv_1", "number": "N1", "close_month": "2026-10", "customer_id": "g"}
    r = receivable_from_stripe(ours, stripe_invoice)
    assert (r.currency, r.currency_exponent, r.amount_remaining) == ("KWD", 3, Decimal("17.365"))
    assert r.due_at == r.due_date == datetime.fromtimestamp(1_790_000_000, UTC)
    assert r.next_payment_attempt == datetime.fromtimestamp(1_800_000_000, UTC)
    charge = receivable_from_stripe(ours, {**stripe_invoice, "due_date": None})
    assert charge.due_at == datetime.fromtimestamp(1_780_000_000, UTC)


def credit_lines(currency: str, tax: str, *pairs: tuple[str, str]) -> list[tuple[str, int]]:
    lines = credit_note_lines([(d, Decimal(a)) for d, a in pairs], Decimal(tax), currency)
    return [(line.description, line.amount_minor) for line in lines]


@pytest.mark.parametrize(
    ("currency", "tax", "pairs", "expected"),
    [
        ("USD", "1.67", [("fee", "9.99")], [("fee", 999), ("Tax", 167)]),
        ("USD", "0.00", [("fee", "9.99")], [("fee", 999)]),
        ("JPY", "50", [("tokens", "500")], [("tokens", 500), ("Tax", 50)]),
        ("KWD", "0.125", [("tokens", "1.234")], [("tokens", 1234), ("Tax", 125)]),
    ],
    ids=["usd", "no_tax_line", "jpy", "kwd"],
)
def test_credit_note_lines_are_minor_units_plus_a_tax_line(currency, tax, pairs, expected):
    assert credit_lines(currency, tax, *pairs) == expected


def test_a_discount_given_back_is_netted_out_of_the_first_lines_and_named():
    lines = credit_lines("USD", "2.00", ("a", "1.00"), ("b", "5.00"), ("promo", "-3.00"))
    assert lines == [("b, net of promo", 300), ("Tax", 200)]  # a is used up: 1.00 + 2.00
    assert sum(amount for _, amount in lines) == 100 + 500 - 300 + 200


def test_credit_note_lines_refuse_what_stripe_cannot_hold():
    with pytest.raises(ValueError, match="not rounded"):
        credit_lines("JPY", "0", ("tokens", "5.5"))
    with pytest.raises(SyncError, match="exceed the others by 100 minor units"):
        credit_lines("USD", "0", ("a", "1.00"), ("promo", "-2.00"))


def test_credit_note_params_settle_as_told_and_carry_our_ids():
    params = credit_note_params(
        "in_1",
        [CreditLine("fee", 999)],
        memo="why",
        metadata={"meterbook_credit_note_id": "cn_1"},
        settlement={"out_of_band_amount": 999},
    )
    assert params == {
        "invoice": "in_1",
        "lines": [
            {"type": "custom_line_item", "description": "fee", "quantity": 1, "unit_amount": 999}
        ],
        "memo": "why",
        "metadata": {"meterbook_credit_note_id": "cn_1"},
        "out_of_band_amount": 999,
    }
