"""The receivables view (the `accounts_receivable` asset's): per invoice what is still owed after
credit notes and refunds, days overdue and the last reminder sent; counts and totals. And the
two Dagster assets, materialized on a workspace: their metadata says the same."""

from __future__ import annotations

from decimal import Decimal

import pytest
from dunning_fixtures import ACME, NOMAIL, PASSWORD, TOKYO, Invoice, credit, day, make_world

from integrations.mail.smtp import SmtpTransport
from orchestration.billing.dunning import read_receivables, receivables_view
from orchestration.sql import connect

PAID = Invoice("inv_paid_2026_10", "MB-2026-000004", "acme", "USD", 2, "20.00", "send_invoice")


@pytest.fixture
def ar_world(tmp_path, smtp_server):
    from dunning_fixtures import smtp_settings

    world = make_world(
        tmp_path / "ar", smtp_settings(smtp_server.port), [ACME, TOKYO, NOMAIL, PAID]
    )
    world.stripe.pay(PAID)
    credit(world.warehouse, PAID, "5.00", settlement="refund")
    credit(world.warehouse, NOMAIL, "50.00")  # credited in full
    credit(world.warehouse, ACME, "2.72")
    return world


@pytest.fixture
def transport(ar_world):
    return SmtpTransport(ar_world.catalog().settings.smtp)


def test_the_view_shows_what_is_owed_how_late_and_the_last_reminder(ar_world, transport):
    ar_world.run(day(1), transport)
    ar_world.run(day(7), transport)
    view = receivables_view(ar_world.states(), ar_world.outbox.last_sent(), day(9))
    lines = {line.number: line for line in view.lines}
    acme = lines["MB-2026-000001"]
    assert (acme.status, acme.amount_due, acme.credited, acme.days_overdue) == (
        "overdue", "160.00", "2.72", 9,
    )  # fmt: skip
    assert acme.last_reminder == "reminder_7"
    assert acme.last_reminder_at == day(7).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    tokyo = lines["MB-2026-000002"]  # an automatic charge that has not failed: not late
    assert (tokyo.status, tokyo.amount_due, tokyo.days_overdue, tokyo.last_reminder) == (
        "open", "7263", 0, None,
    )  # fmt: skip
    assert (lines["MB-2026-000003"].status, lines["MB-2026-000003"].amount_due) == (
        "credited",
        "0.00",
    )
    paid = lines["MB-2026-000004"]
    assert (paid.status, paid.amount_due, paid.refunded) == ("paid", "0.00", "5.00")
    assert [line.number for line in view.lines][:2] == ["MB-2026-000001", "MB-2026-000002"]
    assert view.counts == {"overdue": 1, "open": 1, "credited": 1, "paid": 1}
    assert view.owed == {"USD": Decimal("160.00"), "JPY": Decimal("7263")}
    assert view.overdue == {"USD": Decimal("160.00")}
    metadata = view.metadata()
    assert metadata["owed"] == {"JPY": "7263", "USD": "160.00"}
    assert metadata["overdue_amount"] == {"USD": "160.00"}
    table = metadata["receivables"].splitlines()
    assert table[2].startswith("| MB-2026-000001 | acme | overdue | USD 160.00 | 2.72 | 0.00 | 9 ")
    assert "| reminder_7 (" in table[2]
    assert len(table) == 4  # header, rule, the two invoices still owed


def test_a_warehouse_before_credit_notes_reads_as_never_credited(tmp_path):
    world = make_world(tmp_path / "home", "", [ACME])
    world.pull(day(1))
    con = connect(world.warehouse)
    try:
        con.execute("DROP VIEW meterbook_ledger.invoice_credits")
        [state] = read_receivables(con)
    finally:
        con.close()
    assert (state.reduced_due, state.credited_total, state.amount_due) == (
        Decimal(0), Decimal(0), Decimal("162.72"),
    )  # fmt: skip


def _materialize(world, assets, monkeypatch, now, **resources):
    from dagster import materialize

    from orchestration.defs.resources import MeterbookWorkspace

    monkeypatch.setenv("METERBOOK_NOW", now.isoformat())
    result = materialize(
        assets, resources={"meterbook": MeterbookWorkspace(home=str(world.home)), **resources}
    )
    assert result.success
    return {
        event.asset_key.to_user_string(): {
            k: getattr(v, "value", v)
            for k, v in event.step_materialization_data.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
    }


def test_the_dunning_asset_sends_and_reports(ar_world, smtp_server, monkeypatch, caplog):
    from orchestration.defs.dunning.assets import dunning_notices

    ar_world.pull(day(7))
    metadata = _materialize(ar_world, [dunning_notices], monkeypatch, day(7, hour=10))
    notices = metadata["dunning_notices"]
    assert {k: notices[k] for k in ("due", "sent", "skipped", "cancelled", "failed", "held")} == {
        "due": 1, "sent": 1, "skipped": 1, "cancelled": 0, "failed": 0, "held": 0,
    }  # fmt: skip
    assert notices["delivery"] == f"smtp://127.0.0.1:{smtp_server.port} (none)"
    assert (
        "Reminder: invoice MB-2026-000001 is 7 days overdue (USD 160.00 due)" in notices["previews"]
    )
    assert "Our records show that invoice MB-2026-000001" in notices["previews"]
    assert [r.step for r in smtp_server.received] == ["reminder_7"]
    assert PASSWORD not in caplog.text


def test_the_receivables_asset_pulls_and_shows_the_view(ar_world, transport, monkeypatch):
    from orchestration.defs.stripe.assets import accounts_receivable
    from orchestration.defs.stripe.resource import StripeResource

    ar_world.run(day(1), transport)
    base = ar_world.stripe.serve()
    try:
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_dunning")
        monkeypatch.setenv("STRIPE_API_BASE", base)
        metadata = _materialize(
            ar_world, [accounts_receivable], monkeypatch, day(3),
            stripe=StripeResource(max_attempts=1),
        )["accounts_receivable"]  # fmt: skip
    finally:
        ar_world.stripe.stop()
    assert metadata["pulled"] == 3  # the paid one is final: not asked again
    assert (metadata["overdue"], metadata["invoices_credited"], metadata["invoices_paid"]) == (
        1,
        1,
        1,
    )
    assert metadata["owed"] == {"JPY": "7263", "USD": "160.00"}
    assert (
        "| MB-2026-000001 | acme | overdue | USD 160.00 | 2.72 | 0.00 | 3 | reminder_1 ("
        in (metadata["receivables"])
    )
