"""`meterbook credit-note --refund` end to end through the `credit_note` Dagster job against the
Stripe test double: the job issues the credit note in the ledger and pushes it, refund first,
exactly once; the refund and the credit note in Stripe carry the ledger's amounts."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from stripe_fixtures import API_KEY

from integrations.stripe import pull_payment_status, sync_period
from orchestration.billing.finalize import finalize_period
from orchestration.cli import main
from orchestration.sql import connect

CLOSE_FIXTURES = Path(__file__).resolve().parents[1] / "close" / "close_fixtures.py"
ISSUED = "2026-11-20T10:00:00Z"


def _close_fixtures():
    spec = importlib.util.spec_from_file_location("credit_job_close_fixtures", CLOSE_FIXTURES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def home(tmp_path, stripe_double, gateway, monkeypatch) -> Path:
    """October finalized, pushed to the double, acme's invoice paid and its status pulled."""
    fixtures = _close_fixtures()
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "catalog.yaml").write_text(yaml.safe_dump(fixtures.CATALOG))
    con = connect(tmp_path / "warehouse.duckdb")
    try:
        finalize_period(
            con, fixtures.catalog(), "2026-10", datetime(2026, 11, 5, tzinfo=UTC), fixtures.drafts()
        )
        synced = sync_period(con, fixtures.catalog(), "2026-10", gateway)
        assert not synced.failures
        acme = next(o for o in synced.outcomes if o.number == "MB-2026-000001")
        stripe_double.pay(acme.stripe_invoice_id)
        pull_payment_status(con, gateway, datetime(2026, 11, 10, tzinfo=UTC))
    finally:
        con.close()
    for name in ("DAGSTER_HOME", "METERBOOK_HOME", "METERBOOK_WAREHOUSE"):
        monkeypatch.setenv(name, "")  # the run exports them: undone after the test
    monkeypatch.setenv("METERBOOK_NOW", ISSUED)
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_double.url)
    return tmp_path


def test_a_refund_credit_note_is_issued_and_pushed_once_by_the_job(home, stripe_double, capsys):
    with connect(home / "warehouse.duckdb") as con:
        (document,) = con.execute(
            "SELECT document FROM meterbook_ledger.invoices WHERE number = 'MB-2026-000001'"
        ).fetchall()[0]
    fee = next(x for x in json.loads(document)["lines"] if x["kind"] == "fixed_fee")
    argv = ["credit-note", "MB-2026-000001", "--line", fee["line_id"], "--amount", "10.00",
            "--reason", "seat unused", "--refund", "--json", "--home", str(home)]  # fmt: skip

    assert main(argv) == 0
    note = json.loads(capsys.readouterr().out)

    assert (note["settlement"], note["subtotal"], note["tax_total"], note["total"]) == (
        "refund",
        "10.00",
        "2.00",
        "12.00",
    )  # tax 20% of the 10.00 credited (acme's invoice is all taxable)
    with connect(home / "warehouse.duckdb") as con:
        (stripe_invoice_id,) = con.execute(
            "SELECT stripe_invoice_id FROM meterbook_stripe.invoices WHERE number = ?",
            ["MB-2026-000001"],
        ).fetchall()[0]
        mapped = con.execute(
            "SELECT number, stripe_refund_id, total_minor FROM meterbook_stripe.credit_notes"
        ).fetchall()
    (refund,) = stripe_double.refunds_for(stripe_invoice_id)
    (credit_note,) = stripe_double.credit_notes_for(stripe_invoice_id)
    assert refund["amount"] == 1200
    assert credit_note["total"] == 1200 and credit_note["refund"] == refund["id"]
    assert mapped == [(note["number"], refund["id"], 1200)]

    # the same month synced again: nothing new in Stripe
    creates = sum(
        1 for post in stripe_double.posts() if post.path.endswith(("credit_notes", "refunds"))
    )
    assert main(["sync-stripe", "--period", "2026-10", "--home", str(home)]) == 0
    again = sum(
        1 for post in stripe_double.posts() if post.path.endswith(("credit_notes", "refunds"))
    )
    assert again == creates == 2
