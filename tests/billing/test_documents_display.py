"""What an invoice document prints: quantities, units, labels, dates and payment terms."""

from __future__ import annotations

import copy
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "close"))

from close_fixtures import CATALOG, drafts, line  # noqa: E402

from integrations.stripe import payloads  # noqa: E402
from orchestration.billing.documents import document_terms, render_invoice_html  # noqa: E402
from orchestration.billing.documents.chart import charted_meters  # noqa: E402
from orchestration.billing.documents.files import _trial_ends  # noqa: E402
from orchestration.billing.documents.lines import kind_label, line_row, span  # noqa: E402
from orchestration.billing.documents.terms import DEFAULT_DAYS_UNTIL_DUE  # noqa: E402
from orchestration.billing.documents.text import display_quantity, quantity_text  # noqa: E402
from orchestration.catalog.models import Catalog, Customer  # noqa: E402


def catalog_with(settings=None, meters=None, customers=None, subscriptions=None) -> Catalog:
    data = copy.deepcopy(CATALOG)
    data["settings"].update(settings or {})
    for meter in data["meters"]:
        meter.update((meters or {}).get(meter["code"], {}))
    for customer in data["customers"]:
        customer.update((customers or {}).get(customer["id"], {}))
    for sub in data["subscriptions"]:
        sub.update((subscriptions or {}).get(sub["id"], {}))
    return Catalog.model_validate(data)


@pytest.mark.parametrize(
    ("value", "decimals", "shown"),
    [
        ("4500.000000000000", None, "4500"),  # trailing zeros cut
        ("151.961627499997", None, "151.9616"),  # at most 4 decimals
        ("0.00005", None, "0.0001"),  # half-up, like money
        ("0.00004", None, "0"),
        ("12.5", None, "12.5"),
        ("12.5", 2, "12.50"),  # display_decimals: exactly that many
        ("12.345", 2, "12.35"),
        ("151.961627499997", 0, "152"),
        ("99999999999999999999999999.999999999999", None, "100000000000000000000000000"),
        (None, None, ""),
    ],
)
def test_quantities_at_display_precision(value, decimals, shown):
    assert display_quantity(value, decimals) == shown


def test_prices_are_never_rounded():
    assert quantity_text("0.001714285700") == "0.0017142857"


def test_the_meter_display_decimals_win_over_the_settings_and_the_json_keeps_every_digit():
    cat = catalog_with({"display_decimals": 1}, {"tokens": {"display_decimals": 3}})
    calls = line("usage", "1.52", meter="api_calls", quantity="15.24999")
    tokens = line("usage", "0.03", meter="tokens", quantity="15.24999")
    fee = line("fixed_fee", "49.00", fee_code="platform", quantity="1")
    assert line_row(calls, "USD", cat, None).quantity == "15.2"
    assert line_row(tokens, "USD", cat, None).quantity == "15.250"
    assert line_row(fee, "USD", cat, None).quantity == "1.0"
    assert calls["quantity"] == "15.24999"  # the document reads the invoice, never changes it


def test_a_meter_billed_in_thousands_shows_its_unit():
    cat = catalog_with(meters={"tokens": {"unit": {"divide_by": "1000", "rounding": "up"}}})
    tokens = {
        **line("usage", "9.00", meter="tokens", quantity="4500"),
        "unit_price": "0.002000000000",
    }
    row = line_row(tokens, "USD", cat, None)
    assert row.notes == ("Quantities in units of 1,000 LLM tokens",)
    assert row.unit_price == "0.002 per 1,000 LLM tokens"
    plain = line_row(line("usage", "1", meter="api_calls", quantity="3"), "USD", cat, None)
    assert plain.notes == () and plain.unit_price == ""


def test_trial_credit_and_discount_lines_are_labelled():
    cat = catalog_with()
    trial_end = date(2026, 10, 15)
    in_trial = line("usage", "0", meter="api_calls", quantity="7", end="2026-10-15")
    after = line("usage", "0", meter="api_calls", quantity="0", start="2026-10-15")
    assert line_row(in_trial, "USD", cat, trial_end).tags == ("trial",)
    assert line_row(after, "USD", cat, trial_end).tags == ()
    assert line_row(in_trial, "USD", cat, None).tags == ()  # no trial: a zero is a zero
    credit = line("fixed_fee_credit", "-10.00", fee_code="platform")
    discount = line("discount", "-5.00", fee_code="launch20")
    assert (line_row(credit, "USD", cat, None).label, line_row(credit, "USD", cat, None).tags) == (
        "Fee credit",
        ("credit",),
    )
    assert (
        line_row(discount, "USD", cat, None).label,
        line_row(discount, "USD", cat, None).tags,
    ) == (
        "Discount",
        (),
    )
    assert kind_label("promotional_credit") == "Promotional credit"


def test_the_trial_end_comes_from_the_catalog_subscription_or_its_plan():
    cat = catalog_with(subscriptions={"sub_acme": {"trial_end": "2026-11-01"}})
    data = copy.deepcopy(CATALOG)
    data["plans"][1]["versions"][0]["trial_days"] = 14  # yen, of sub_tokyo from 2026-01-01
    ends = _trial_ends(Catalog.model_validate(data))
    assert _trial_ends(cat) == {"sub_acme": date(2026, 11, 1)}
    assert ends == {"sub_tokyo": date(2026, 1, 15)}
    page = render_invoice_html(drafts()["invoices"][0], "2026-10", cat, trial_end=date(2026, 11, 1))
    assert page.count('<span class="tag trial">trial</span>') == 1  # the usage line at 0.00


def test_every_period_shows_its_inclusive_last_day():
    adjustment = line(
        "adjustment",
        "1.20",
        meter="api_calls",
        description="Late usage for 2026-10-01 to 2026-11-01: API calls",
    )
    row = line_row(adjustment, "USD", catalog_with(), None)
    assert row.description == "Late usage for 2026-10-01 to 2026-10-31: API calls"
    assert row.period == "2026-10-01 to 2026-10-31" == span("2026-10-01", "2026-11-01")


def test_payment_terms_agree_with_what_stripe_is_sent():
    assert DEFAULT_DAYS_UNTIL_DUE == payloads.DEFAULT_DAYS_UNTIL_DUE
    finalized = datetime(2026, 11, 5, 2, 30)  # UTC; still Nov 4 in Los Angeles
    emailed = Customer(id="x", timezone="America/Los_Angeles", collection_method="send_invoice")
    terms = document_terms(emailed, finalized)
    assert (terms.issue_date, terms.due_date) == (date(2026, 11, 4), date(2026, 12, 4))
    assert terms.words == "Payment due 30 days after the issue date"
    fourteen = document_terms(emailed.model_copy(update={"days_until_due": 14}), finalized)
    assert fourteen.due_date == date(2026, 11, 18)
    charged = document_terms(Customer(id="y"), finalized)
    assert (charged.issue_date, charged.due_date) == (date(2026, 11, 5), date(2026, 11, 5))
    assert "automatically" in charged.words
    draft = document_terms(emailed, None)
    assert draft.issue_date is None and draft.due_date is None


def test_seller_and_customer_blocks_are_printed_escaped():
    seller = {
        "name": "Meter & Co <Ltd>",
        "address": ["1 Main Street", "Dublin D01"],
        "tax_id": "IE1234567X",
        "email": "billing@meter.example",
        "phone": "+353 1 555 0100",
    }
    cat = catalog_with(
        {"seller": seller},
        customers={"acme": {"address": ["9 Side Road", "Leeds"], "tax_id": "GB999"}},
    )
    terms = document_terms(cat.customer("acme"), datetime(2026, 11, 5, 9))
    page = render_invoice_html(drafts()["invoices"][0], "2026-10", cat, terms)
    for text in [
        "Meter &amp; Co &lt;Ltd&gt;",
        "Dublin D01",
        "Tax id: IE1234567X",
        "+353 1 555 0100",
    ]:
        assert text in page
    assert "9 Side Road" in page and "Tax id: GB999" in page
    assert "Issue date</td><td>2026-11-05" in page and "Due date</td><td>2026-11-05" in page
    assert "draft, not issued" not in page


def test_catalog_fields_are_optional_and_checked():
    assert catalog_with().settings.seller is None
    with pytest.raises(ValueError, match="display_decimals"):
        catalog_with(meters={"tokens": {"display_decimals": 13}})
    with pytest.raises(ValueError, match="name"):
        catalog_with({"seller": {"address": ["no name"]}})
    assert (
        json.loads(catalog_with({"display_decimals": 2}).settings.model_dump_json())[
            "display_decimals"
        ]
        == 2
    )
    assert Decimal(display_quantity("1", 2)) == 1


def test_at_most_four_charts_for_the_meters_billing_the_most():
    amounts = {"a": "1.00", "b": "9.00", "c": "3.00", "d": "0.00", "e": "5.00", "f": "7.00"}
    lines = [line("usage", amount, meter=code, quantity=1) for code, amount in amounts.items()]
    lines.append(line("usage", "-8.00", meter="d", group={"m": "x"}, quantity=1))  # d: 8 in all
    invoice = {"lines": lines}
    assert charted_meters(invoice) == ["b", "d", "e", "f"]  # in line order
    assert charted_meters({"lines": lines[:4]}) == ["a", "b", "c", "d"]
