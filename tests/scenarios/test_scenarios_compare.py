"""The scenario comparator itself, on hand-made matches and mismatches."""

from __future__ import annotations

import copy

from compare import compare


def doc(**overrides) -> dict:
    invoice = {
        "customer_id": "acme",
        "subscription_id": "sub_acme",
        "currency": "USD",
        "period_start": "2026-10-01",
        "period_end": "2026-11-01",
        "subtotal": "68.60",
        "discount_total": "0.00",
        "tax_total": "13.72",
        "total": "82.32",
        "amount_due": "82.32",
        "lines": [
            {
                "kind": "usage",
                "meter": "tokens",
                "fee_code": None,
                "group": None,
                "quantity": "4500",
                "billable_quantity": "4500",
                "amount": "9.00",
            },
            {
                "kind": "fixed_fee",
                "meter": None,
                "fee_code": "platform",
                "group": None,
                "quantity": "1",
                "billable_quantity": "1",
                "amount": "59.60",
            },
        ],
    }
    invoice.update(overrides)
    return {"period": "2026-10", "invoices": [invoice]}


def test_identical_documents_match():
    assert compare(doc(), doc()) == []


def test_split_lines_are_summed_and_null_group_equals_empty():
    actual = doc()
    usage = actual["invoices"][0]["lines"][0]
    first = dict(usage, quantity="4000.00", billable_quantity="4000", amount="8.00", group={})
    second = dict(usage, quantity="500", billable_quantity="500.0000001", amount="1.00")
    fee_a = dict(actual["invoices"][0]["lines"][1], amount="28.60")
    fee_b = dict(actual["invoices"][0]["lines"][1], amount="31.00")
    actual["invoices"][0]["lines"] = [first, second, fee_a, fee_b]
    assert compare(actual, doc()) == []


def test_a_different_amount_is_reported():
    actual = doc()
    actual["invoices"][0]["lines"][0]["amount"] = "9.01"
    assert compare(actual, doc()) == [
        "invoice acme/sub_acme: line ('usage', 'tokens', '{}') amount 9.01 != expected 9.00"
    ]


def test_totals_compare_as_exact_strings():
    diffs = compare(doc(subtotal="68.6"), doc())
    assert diffs == ["invoice acme/sub_acme: subtotal '68.6' != expected '68.60'"]


def test_amounts_need_the_minor_digits():
    actual = doc()
    actual["invoices"][0]["lines"][0]["amount"] = "9"
    assert any("minor digits" in d for d in compare(actual, doc()))
    yen = doc(currency="JPY")
    yen["invoices"][0]["lines"][0]["amount"] = "9.00"
    assert any("minor digits" in d for d in compare(yen, yen))


def test_quantity_differences_beyond_the_tolerance():
    actual = doc()
    actual["invoices"][0]["lines"][0]["quantity"] = "4500.01"
    assert compare(actual, doc()) == [
        "invoice acme/sub_acme: line ('usage', 'tokens', '{}') quantity 4500.01 != expected 4500"
    ]


def test_missing_extra_and_duplicate_invoices():
    extra = copy.deepcopy(doc())
    extra["invoices"].append(dict(extra["invoices"][0], subscription_id="sub_2"))
    assert compare(extra, doc()) == ["invoice acme/sub_2: unexpected"]
    assert compare(doc(), extra) == ["invoice acme/sub_2: missing"]
    twice = copy.deepcopy(doc())
    twice["invoices"].append(copy.deepcopy(twice["invoices"][0]))
    assert compare(twice, doc())[0] == "actual: 2 invoices for ('acme', 'sub_acme')"


def test_zero_non_usage_lines_may_be_missing_but_usage_lines_may_not():
    actual = doc()
    actual["invoices"][0]["lines"].append(
        {
            "kind": "commitment_true_up",
            "meter": None,
            "fee_code": None,
            "group": None,
            "quantity": None,
            "billable_quantity": None,
            "amount": "0.00",
        }
    )
    assert compare(actual, doc()) == []
    missing_usage = doc()
    del missing_usage["invoices"][0]["lines"][0]
    diffs = compare(missing_usage, doc())
    assert diffs == ["invoice acme/sub_acme: line ('usage', 'tokens', '{}') missing (amount 9.00)"]


def test_other_kinds_match_by_kind_alone():
    actual, expected = doc(), doc()
    for d, code in ((actual, "a"), (expected, "b")):
        d["invoices"][0]["lines"].append(
            {
                "kind": "discount",
                "meter": None,
                "fee_code": code,
                "group": None,
                "quantity": None,
                "billable_quantity": None,
                "amount": "-1.00",
            }
        )
    assert compare(actual, expected) == []
