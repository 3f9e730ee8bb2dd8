"""`meterbook dunning [--send] [--json]` (orchestration/cli_dunning.py): what is due, recording
nothing; and with --send the `dunning` Dagster job (pull from Stripe, then decide and send),
printing what it sent."""

from __future__ import annotations

import json
from argparse import Namespace
from datetime import timedelta

import pytest
from dunning_fixtures import ACME, TOKYO, day

from integrations.mail.smtp import SmtpTransport
from orchestration.cli import _catalog, _run
from orchestration.cli_dunning import DunningRefused, cmd_dunning
from orchestration.workspace import Workspace


def _dunning(world, capsys, **flags) -> tuple[int, str]:
    ws = Workspace(world.home)
    args = Namespace(**{"send": False, "json": False, **flags})
    code = cmd_dunning(ws, args, _catalog(ws), _run)
    return code, capsys.readouterr().out


def test_the_list_shows_what_is_due_and_records_nothing(world, monkeypatch, capsys):
    world.stripe.fail_charge(TOKYO)
    world.pull(day(0))
    world.pull(day(10))
    monkeypatch.setenv("METERBOOK_NOW", (day(10) + timedelta(hours=1)).isoformat())
    code, out = _dunning(world, capsys)
    assert code == 0
    assert out.splitlines() == [
        "due now (2):",
        "  MB-2026-000001  acme  reminder_7 (skips reminder_1)  10 days overdue  USD 162.72  "
        "to billing@acme.test",
        "  MB-2026-000002  tokyo  reminder_7 (skips reminder_1)  10 days overdue  JPY 7263  "
        "to ap@tokyo.test",
        "held (1):",
        "  MB-2026-000003  nomail: customer nomail has no email",
        "`meterbook dunning --send` sends them",
    ]
    assert world.outbox.rows() == []  # a list is not a decision
    code, out = _dunning(world, capsys, json=True)
    document = json.loads(out)
    assert [(d["number"], d["step"], d["skips"], d["amount_due"]) for d in document["due"]] == [
        ("MB-2026-000001", "reminder_7", ["reminder_1"], "162.72"),
        ("MB-2026-000002", "reminder_7", ["reminder_1"], "7263"),
    ]
    assert document["due"][0]["payment_url"] == f"https://invoice.stripe.test/i/{ACME.stripe_id}"
    assert document["waiting"] == []


def test_the_list_shows_what_earlier_runs_could_not_send(world, monkeypatch, capsys):
    world.run(day(1), None)  # recorded without a transport
    monkeypatch.setenv("METERBOOK_NOW", (day(1) + timedelta(hours=1)).isoformat())
    code, out = _dunning(world, capsys)
    assert "decided earlier, not sent yet (1):" in out
    assert "  MB-2026-000001  acme  reminder_1  pending since 2026-11-16T09:00:00.000Z" in out


def test_nothing_due_says_so(world, monkeypatch, capsys):
    monkeypatch.setenv("METERBOOK_NOW", day(-3).isoformat())
    world.pull(day(-3))
    assert _dunning(world, capsys) == (0, "nothing due: no open invoice is past a reminder day\n")


def test_without_dunning_or_smtp_the_command_says_what_is_missing(world, capsys):
    catalog = world.catalog_dir / "catalog.yaml"
    text = catalog.read_text()
    catalog.write_text(text[: text.index("  smtp:")])
    with pytest.raises(DunningRefused, match="settings.smtp is not set in the catalog"):
        _dunning(world, capsys, send=True)
    catalog.write_text(text[: text.index("  dunning:")])
    with pytest.raises(DunningRefused, match="settings.dunning is not set in the catalog"):
        _dunning(world, capsys)


def test_send_runs_the_dunning_job_and_prints_what_it_sent(world, smtp_server, monkeypatch, capsys):
    for name in ("DAGSTER_HOME", "METERBOOK_HOME", "METERBOOK_WAREHOUSE"):
        monkeypatch.setenv(name, "")  # the run exports them: undone after the test
    base = world.stripe.serve()
    try:
        monkeypatch.setenv("STRIPE_API_KEY", "sk_test_dunning")
        monkeypatch.setenv("STRIPE_API_BASE", base)
        monkeypatch.setenv("METERBOOK_NOW", day(7).isoformat())
        code, out = _dunning(world, capsys, send=True)
        assert (code, out.splitlines()) == (0, [
            "sent MB-2026-000001 reminder_7 to billing@acme.test (USD 162.72, 7 days overdue)",
            "skipped MB-2026-000001 reminder_1: reminder_7 was due too and sent instead",
            "1 sent, 1 skipped, 0 cancelled, 0 failed, 0 not sent",
        ])  # fmt: skip
        assert [r.step for r in smtp_server.received] == ["reminder_7"]
        world.stripe.pay(ACME)
        monkeypatch.setenv("METERBOOK_NOW", day(14).isoformat())
        code, out = _dunning(world, capsys, send=True, json=True)  # paid since: nothing
    finally:
        world.stripe.stop()
    assert code == 0
    assert json.loads(out) == {
        "sent": [], "skipped": [], "cancelled": [], "failed": [], "not_sent": [],
    }  # fmt: skip
    assert len(smtp_server.received) == 1


def test_what_a_send_could_not_send_is_said_and_fails_the_command(world, smtp_server):
    from orchestration.cli_dunning import _changes, _changes_text

    smtp_server.replies = ["451 4.3.0 try again later"]
    world.run(day(1), SmtpTransport(world.catalog().settings.smtp))
    changes = _changes({}, world.outbox.rows())
    assert [c["number"] for c in changes["not_sent"]] == ["MB-2026-000001"]
    assert _changes_text(changes).splitlines() == [
        "not sent MB-2026-000001 reminder_1 (tried again next run): refused: 451 4.3.0 try "
        "again later",
        "0 sent, 0 skipped, 0 cancelled, 0 failed, 1 not sent",
    ]
