"""`meterbook revenue` (SPEC 8): what it says before anything is finalized, the journal's
CSV form, and the text view of a report. The figures themselves are proven end to end in
tests/revenue/."""

from __future__ import annotations

import pytest

from orchestration.billing.revenue.journal import HEADER, journal_csv
from orchestration.billing.revenue.report import format_revenue
from orchestration.cli import main


def test_revenue_before_any_finalization_says_what_to_do(tmp_path, capsys):
    assert main(["revenue", "--period", "2026-10", "--home", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no invoice is finalized yet" in err
    assert "meterbook finalize --period" in err


def test_revenue_needs_a_month(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["revenue", "--period", "2026-13", "--home", str(tmp_path)])
    assert exc.value.code == 2
    assert "2026-13" in capsys.readouterr().err


def test_the_journal_csv_has_a_header_and_one_line_per_row():
    rows = [
        {
            "date": "2026-11-01",
            "currency": "USD",
            "entry": "invoice",
            "account": "1200 Accounts receivable",
            "debit": "10.00",
            "credit": "0.00",
        },
        {
            "date": "2026-11-01",
            "currency": "USD",
            "entry": "invoice",
            "account": "2400, deferred",  # a comma in a name is quoted, not a new column
            "debit": "0.00",
            "credit": "10.00",
        },
    ]
    text = journal_csv(rows)
    assert text.splitlines() == [
        ",".join(HEADER),
        "2026-11-01,USD,invoice,1200 Accounts receivable,10.00,0.00",
        '2026-11-01,USD,invoice,"2400, deferred",0.00,10.00',
    ]


def test_the_text_view_shows_both_roll_forwards_and_the_largest_deferred_balances():
    document = {
        "period": "2026-11",
        "currencies": {
            "USD": {
                "recognized": "12.00",
                "recognized_by_kind": {"fixed_fee": "10.00", "usage": "2.00"},
                "deferred": {
                    "opening": "0.00",
                    "billed": "5010.00",
                    "recognized": "1510.00",
                    "breakage": "0.00",
                    "closing": "3500.00",
                },
                "unbilled": {
                    "opening": "2.00",
                    "recognized": "0.00",
                    "invoiced": "2.00",
                    "closing": "0.00",
                },
            }
        },
        "customers": [
            {
                "customer_id": "acme",
                "currency": "USD",
                "recognized": "12.00",
                "deferred_closing": "3500.00",
                "unbilled_closing": "0.00",
            },
            {
                "customer_id": "beta",
                "currency": "USD",
                "recognized": "0.00",
                "deferred_closing": "0.00",
                "unbilled_closing": "0.00",
            },
        ],
    }
    text = format_revenue(document)
    assert "USD: recognized 12.00" in text
    assert (
        "deferred: opening 0.00 + billed in advance 5010.00 - recognized 1510.00"
        " - breakage 0.00 = closing 3500.00"
    ) in text
    assert "unbilled: opening 2.00 + recognized 0.00 - invoiced 2.00 = closing 0.00" in text
    largest = text.split("Largest deferred balances")[1]
    assert "acme" in largest and "beta" not in largest  # a zero balance is not listed
