"""Dunning end to end against a real SMTP server on 127.0.0.1: the payment status pulled (from
a fake Stripe, through the real pull), the steps decided and recorded, the messages sent and
received; day after day, each (invoice, step) exactly once."""

from __future__ import annotations

from dunning_fixtures import ACME, TOKYO, credit, day, make_world, smtp_settings

from integrations.mail.smtp import SmtpTransport
from orchestration.billing.dunning import run_dunning


def acme_steps(server) -> list[str]:
    return [r.step for r in server.received if r.invoice_id == ACME.invoice_id]


def test_reminders_on_days_1_7_and_14_and_a_final_notice_each_sent_once(
    world, transport, smtp_server
):
    # every day of the first weeks, then some, and again later on the days a step falls due
    # (a schedule and a run by hand on the same day)
    for n in [*range(-1, 17), 20, 25, 29, 30, 31, 32]:
        for hour in (9, 17) if n in (1, 7, 14, 30) else (9,):
            world.run(day(n, hour), transport)
        sent = acme_steps(smtp_server)
        expected = [s for d, s in ((1, "reminder_1"), (7, "reminder_7"), (14, "reminder_14"),
                                   (30, "final_notice")) if d <= n]  # fmt: skip
        assert sent == expected, f"day {n}"
    ids = [r.message_id for r in smtp_server.received if r.invoice_id == ACME.invoice_id]
    assert len(set(ids)) == 4
    assert all(
        ids[i].startswith(f"<dunning.{s}.inv_acme_2026_10@meterbook.test")
        for i, s in enumerate(expected)
    )
    assert {k: v for k, v in world.statuses().items() if k[0] == ACME.invoice_id} == {
        (ACME.invoice_id, step): "sent" for step in expected
    }


def test_each_message_says_what_is_owed_how_late_and_where_to_pay(world, transport, smtp_server):
    world.run(day(7), transport)
    [message] = smtp_server.received
    assert message.mail_from == "billing@meterbook.test"
    assert message.rcpt_tos == ("billing@acme.test",)
    parsed = message.message
    assert (
        parsed["Subject"] == "Reminder: invoice MB-2026-000001 is 7 days overdue (USD 162.72 due)"
    )
    assert parsed["From"] == "Meterbook Billing <billing@meterbook.test>"
    assert parsed["To"] == "billing@acme.test"
    text, html = message.text(), message.html()
    assert "Dear Acme & Sons," in text  # text is not HTML-escaped...
    assert "Dear Acme &amp; Sons," in html  # ...HTML is
    for body in (text, html):
        assert "MB-2026-000001" in body and "USD 162.72" in body
        assert "7 days past due" in body
        assert f"https://invoice.stripe.test/i/{ACME.stripe_id}" in body
        assert "service from 2026-10-01 to 2026-10-31" in body  # the last day, inclusive
        assert "Meterbook Demo Inc." in body
    # recorded as sent, with the bytes the server received (it ends lines as it likes)
    row = world.outbox.get(ACME.invoice_id, "reminder_7")
    assert (row.status, row.attempts, row.recipients) == ("sent", 1, ("billing@acme.test",))
    assert row.message.splitlines() == message.data.splitlines()
    assert row.message_id == parsed["Message-ID"]


def test_several_steps_due_at_once_send_only_the_latest(world, transport, smtp_server):
    report = world.run(day(10), transport)  # dunning turned on (or the schedule back) on day 10
    assert acme_steps(smtp_server) == ["reminder_7"]
    statuses = world.statuses()
    assert statuses[(ACME.invoice_id, "reminder_1")] == "skipped"
    assert statuses[(ACME.invoice_id, "reminder_7")] == "sent"
    assert world.outbox.get(ACME.invoice_id, "reminder_1").close_reason == (
        "reminder_7 was due too and sent instead"
    )
    assert report.metadata()["skipped"] == 1
    world.run(day(12), transport)
    world.run(day(14), transport)
    assert acme_steps(smtp_server) == ["reminder_7", "reminder_14"]
    world.run(day(40), transport)
    assert acme_steps(smtp_server) == ["reminder_7", "reminder_14", "final_notice"]
    assert "Final notice" in smtp_server.received[-1].message["Subject"]
    assert "final notice" in smtp_server.received[-1].text()


def test_no_reminder_once_paid_and_the_waiting_ones_are_cancelled_not_sent(
    world, transport, smtp_server
):
    world.run(day(1), transport)
    world.run(day(7), None)  # decided and recorded, but not sent (say SMTP was not set yet)
    assert world.outbox.get(ACME.invoice_id, "reminder_7").status == "pending"
    world.stripe.pay(ACME)
    report = world.run(day(8), transport)
    assert acme_steps(smtp_server) == ["reminder_1"]
    row = world.outbox.get(ACME.invoice_id, "reminder_7")
    assert (row.status, row.close_reason) == ("cancelled", "paid")
    assert report.metadata()["cancelled"] == 1
    for n in (14, 30, 60):
        world.run(day(n), transport)
    assert acme_steps(smtp_server) == ["reminder_1"]
    assert {k[1] for k in world.statuses() if k[0] == ACME.invoice_id} == {
        "reminder_1",
        "reminder_7",
    }


def test_no_reminder_once_credited_in_full_and_a_partial_credit_lowers_the_amount(
    world, transport, smtp_server
):
    credit(world.warehouse, ACME, "62.72")
    world.run(day(1), transport)
    [first] = smtp_server.received
    assert "USD 100.00" in first.message["Subject"]
    assert "after credit notes of USD 62.72" in first.text()
    credit(world.warehouse, ACME, "100.00")  # the rest: nothing is owed any more
    world.run(day(6), None)
    for n in (7, 14, 30):
        report = world.run(day(n), transport)
    assert acme_steps(smtp_server) == ["reminder_1"]
    assert report.metadata()["due"] == 0


def test_a_refund_or_a_wallet_credit_does_not_lower_what_an_unpaid_invoice_owes(
    world, transport, smtp_server
):
    credit(world.warehouse, ACME, "10.00", settlement="wallet")
    world.run(day(1), transport)
    assert "USD 162.72" in smtp_server.received[0].message["Subject"]


def test_an_automatic_charge_is_overdue_from_the_first_failed_attempt(
    world, transport, smtp_server
):
    def tokyo_steps():
        return [r.step for r in smtp_server.received if r.invoice_id == TOKYO.invoice_id]

    first_failure = day(3, hour=6)
    for n in range(-2, 3):
        world.run(day(n), transport)  # the charge has not failed: nothing to ask the customer
    assert tokyo_steps() == []
    world.stripe.fail_charge(TOKYO)
    world.pull(first_failure)  # the pull that sees the failure dates it
    world.stripe.fail_charge(TOKYO)  # a retry fails too: the date stays the first one
    world.run(day(3), transport)
    assert tokyo_steps() == []  # overdue since today
    world.run(day(4), transport)
    assert tokyo_steps() == ["reminder_1"]
    assert world.states()[1].first_failed_at == first_failure
    tokyo = smtp_server.received[-1]
    assert "JPY 7263 due" in tokyo.message["Subject"]  # JPY: no minor digits
    assert tokyo.rcpt_tos == ("ap@tokyo.test",)
    world.run(day(3 + 7), transport)
    assert tokyo_steps() == ["reminder_1", "reminder_7"]


def test_a_customer_without_email_is_held_and_listed(world, transport, smtp_server):
    report = world.run(day(2), transport)
    held = report.metadata()["held_invoices"]
    assert held == [
        {"number": "MB-2026-000003", "customer_id": "nomail", "days_overdue": 2,
         "reason": "customer nomail has no email"}
    ]  # fmt: skip
    assert ("inv_nomail_2026_10", "reminder_1") not in world.statuses()  # nothing recorded


def test_a_stale_payment_status_holds_the_invoice(world, transport, smtp_server):
    world.pull(day(0))
    # a week without a pull: the invoice may have been paid meanwhile
    report = run_dunning(
        world.states(), world.catalog(), world.outbox, day(7), transport,
        catalog_dir=world.catalog_dir,
    )  # fmt: skip
    assert smtp_server.received == [] and world.statuses() == {}
    held = [(h["number"], h["reason"]) for h in report.metadata()["held_invoices"]]
    assert held == [
        ("MB-2026-000001", "payment status out of date: pull it from Stripe"),
        ("MB-2026-000003", "payment status out of date: pull it from Stripe"),
    ]  # tokyo's charge has not failed: nothing is kept back, nothing to list
    world.run(day(7), transport)  # with a pull
    assert acme_steps(smtp_server) == ["reminder_7"]


def test_the_server_refusing_for_good_is_not_retried_and_a_temporary_refusal_is(
    world, transport, smtp_server
):
    smtp_server.replies = ["550 5.1.1 mailbox unavailable"]
    report = world.run(day(1), transport)
    assert report.metadata()["failed"] == 1
    row = world.outbox.get(ACME.invoice_id, "reminder_1")
    assert row.status == "failed" and "550 5.1.1 mailbox unavailable" in row.last_error
    smtp_server.replies = ["451 4.3.0 try again later"]
    world.run(day(7), transport)
    assert world.outbox.get(ACME.invoice_id, "reminder_7").status == "pending"
    world.run(day(8), transport)  # the next run sends it; the refused one stays refused
    assert acme_steps(smtp_server) == ["reminder_1", "reminder_7", "reminder_7"]
    assert world.statuses()[(ACME.invoice_id, "reminder_1")] == "failed"
    assert world.statuses()[(ACME.invoice_id, "reminder_7")] == "sent"


def test_an_unreachable_server_leaves_everything_pending_for_the_next_run(tmp_path, smtp_server):
    from smtp_server import free_port

    dead = free_port()
    world = make_world(tmp_path / "home", smtp_settings(dead))
    report = world.run(day(1), SmtpTransport(world.catalog().settings.smtp))
    assert report.metadata()["sent"] == 0 and report.metadata()["pending"] == 1
    assert (
        "cannot use smtp://127.0.0.1" in world.outbox.get(ACME.invoice_id, "reminder_1").last_error
    )
    (world.catalog_dir / "catalog.yaml").write_text(
        (world.catalog_dir / "catalog.yaml").read_text().replace(str(dead), str(smtp_server.port))
    )
    world.run(day(2), SmtpTransport(world.catalog().settings.smtp))
    assert acme_steps(smtp_server) == ["reminder_1"]


def test_a_template_override_from_the_catalog_is_used(world, transport, smtp_server):
    folder = world.catalog_dir / "templates" / "dunning"
    folder.mkdir(parents=True)
    (folder / "reminder.txt").write_text(
        "Hello {{ customer.name }}: {{ amount_due }} is {{ days_overdue }} days late.\n"
        "{{ payment_url }}\n"
    )
    (folder / "subject.txt").write_text("[{{ invoice.number }}] {{ step.name }}\n")
    world.run(day(7), transport)
    [message] = smtp_server.received
    assert message.message["Subject"] == "[MB-2026-000001] reminder_7"
    assert message.text() == (
        "Hello Acme & Sons: USD 162.72 is 7 days late.\n"
        f"https://invoice.stripe.test/i/{ACME.stripe_id}\n"
    )
    assert "Our records show" in message.html()  # not overridden: the shipped one
