"""`meterbook credit-note` through the real commands and the `credit_note` Dagster job: a
partial credit lowers what an unpaid invoice owes; once paid, a credit becomes a paid grant
in the wallet that the next close draws after tax (SPEC 7, 11)."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from meterbook_commands import meterbook, ok

from orchestration.warehouse.stripe import ensure_stripe_schema

pytestmark = pytest.mark.slow

AFTER_OCTOBER = "2026-11-01T00:10:00Z"
AFTER_NOVEMBER = "2026-12-05T00:00:00Z"
# 1,000 tokens a month at 0.01 (10.00) + a 20.00 fee, tax 10%: 33.00 a month.
CATALOG = """
settings: {invoice_prefix: CT, grace_days: 3, default_currency: USD}
meters:
  - {code: tokens, name: Tokens, event_name: llm.completion, aggregation: sum, expression: tokens}
plans:
  - code: starter
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: seat, name: Seat, amount: "20.00", timing: in_arrears}]
        charges:
          - {meter: tokens, model: per_unit, unit_price: "0.01"}
customers:
  - {id: c1, name: Credit Co, currency: USD, timezone: UTC, tax_rate: "0.10"}
subscriptions:
  - {id: sub_c1, customer_id: c1, plan: starter, start_date: 2026-10-01}
"""


def _events(month: str) -> str:
    return "".join(
        json.dumps(
            {
                "event_id": f"{month}-{day}",
                "customer_id": "c1",
                "event_name": "llm.completion",
                "timestamp": f"{month}-{day:02d}T12:00:00Z",
                "properties": {"tokens": 100},
            }
        )
        + "\n"
        for day in range(1, 11)
    )


@pytest.fixture
def home(tmp_path) -> Path:
    home = tmp_path / "home"
    (home / "catalog").mkdir(parents=True)
    (home / "catalog" / "catalog.yaml").write_text(CATALOG)
    (home / "landing" / "events").mkdir(parents=True)
    (home / "landing" / "events" / "2026-10.jsonl").write_text(_events("2026-10"))
    return home


def invoice(home: Path, now: str, period: str) -> dict:
    (found,) = json.loads(ok(home, now, "invoices", "--period", period, "--json"))["invoices"]
    return found


def mark_paid(home: Path, october: dict) -> None:
    """October paid in full, as the Stripe pull would record it."""
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        ensure_stripe_schema(con)
        con.execute(
            "INSERT INTO meterbook_stripe.accounts_receivable (invoice_id, number, close_month,"
            " customer_id, stripe_invoice_id, currency, currency_exponent, status, total,"
            " amount_due, amount_paid, amount_remaining, attempt_count, pulled_at) VALUES"
            " (?, ?, '2026-10', 'c1', 'in_1', 'USD', 2, 'paid', ?, ?, ?, 0, 1, now())",
            [october["invoice_id"], october["number"], october["total"], october["total"],
             october["total"]],
        )  # fmt: skip


def test_credit_notes_lower_what_is_owed_then_fill_the_wallet_the_next_close_draws(home):
    ok(home, AFTER_OCTOBER, "close", "--period", "2026-10")
    ok(home, AFTER_OCTOBER, "finalize", "--period", "2026-10")
    october = invoice(home, AFTER_OCTOBER, "2026-10")
    assert october["total"] == "33.00"
    seat = next(x for x in october["lines"] if x["kind"] == "fixed_fee")

    # unpaid: 5.00 of the seat + 10% tax lowers what October owes
    first = json.loads(
        ok(home, AFTER_OCTOBER, "credit-note", october["number"], "--line", seat["line_id"],
           "--amount", "5.00", "--reason", "seat unused", "--json")
    )  # fmt: skip
    assert (first["number"], first["total"], first["settlement"]) == (
        "CN-2026-000001",
        "5.50",
        "reduce_due",
    )
    document = home / "documents" / "credit_notes" / "CN-2026-000001.html"
    assert "seat unused" in document.read_text()

    # a second credit of the seat beyond what is left: refused, nothing numbered
    refused = meterbook(home, AFTER_OCTOBER, "credit-note", october["invoice_id"], "--line",
                        seat["line_id"], "--amount", "15.01", "--reason", "again")  # fmt: skip
    assert refused.returncode == 1
    (message,) = refused.stderr.strip().splitlines()[-1:]
    assert seat["line_id"] in message and "at most 15.00 USD more" in message

    # paid: the whole rest (27.50) becomes a paid grant, drawn by November after tax
    mark_paid(home, october)
    rest = json.loads(ok(home, AFTER_OCTOBER, "credit-note", october["invoice_id"],
                         "--reason", "goodwill", "--json"))  # fmt: skip
    assert (rest["number"], rest["total"], rest["settlement"]) == (
        "CN-2026-000002",
        "27.50",
        "wallet",
    )
    # November's events arrive in November (an ingest on November 1 would hold them as future)
    (home / "landing" / "events" / "2026-11.jsonl").write_text(_events("2026-11"))
    ok(home, AFTER_NOVEMBER, "close", "--period", "2026-11")
    november = invoice(home, AFTER_NOVEMBER, "2026-11")
    assert (november["total"], november["credits_applied"], november["amount_due"]) == (
        "33.00",
        "27.50",
        "5.50",
    )
    wallet = json.loads(ok(home, AFTER_NOVEMBER, "wallets", "--json"))["customers"][0]
    assert wallet["balances"]["paid"] == "0.00"
