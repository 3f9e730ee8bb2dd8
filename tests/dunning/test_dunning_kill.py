"""A dunning run killed mid-send (SIGKILL while the SMTP server holds its answer to DATA: the
server has the message, the sender does not know) resends that one message, with the same
bytes and Message-ID, and nothing else twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from dunning_fixtures import ACME, TOKYO, day

from orchestration.workspace import PROJECT_ROOT

RUN = """
import sys
from pathlib import Path
from integrations.mail.smtp import smtp_transport
from orchestration.billing.dunning import DunningOutbox, dunning_outbox_path, read_receivables
from orchestration.billing.dunning import run_dunning
from orchestration.catalog import load_catalog
from orchestration.sql import connect
from orchestration.workspace import now_utc

home = Path(sys.argv[1])
con = connect(home / "warehouse.duckdb")
states = read_receivables(con)
con.close()  # never open during SMTP: the test's own run needs the file afterwards
catalog = load_catalog(home / "catalog")
outbox = DunningOutbox(dunning_outbox_path(home))
report = run_dunning(
    states, catalog, outbox, now_utc(), smtp_transport(catalog.settings.smtp),
    catalog_dir=home / "catalog",
)
print("finished:", report.sent, "sent", flush=True)
"""


def _start_run(world, now) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "METERBOOK_NOW": now.isoformat()}
    return subprocess.Popen(
        [sys.executable, "-c", RUN, str(world.home)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_killed_while_the_server_holds_data_resends_only_that_message(
    world, transport, smtp_server
):
    world.stripe.fail_charge(TOKYO)
    world.pull(day(0))  # tokyo's charge failed on the due date too: both due on day 1
    world.pull(day(1))
    smtp_server.hold_next_reply()
    run = _start_run(world, day(1))
    try:
        assert smtp_server.wait_until_holding(timeout=60), run.stderr.read()
        run.send_signal(signal.SIGKILL)  # mid-send: the message is in, its answer is not out
        run.wait(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == -signal.SIGKILL
    assert "finished" not in run.stdout.read()
    [first] = smtp_server.received
    assert first.invoice_id == ACME.invoice_id
    statuses = world.statuses()
    assert statuses[(ACME.invoice_id, "reminder_1")] == "sending"  # in doubt: this one only
    assert statuses[(TOKYO.invoice_id, "reminder_1")] == "pending"
    smtp_server.release.set()  # the answer goes to a closed connection
    time.sleep(0.1)

    report = world.run(day(1, hour=10), transport)  # the next run, the same day
    assert [(o.number, o.status, o.resent) for o in report.outcomes] == [
        ("MB-2026-000001", "sent", True),
        ("MB-2026-000002", "sent", False),
    ]
    assert smtp_server.steps() == [
        (ACME.invoice_id, "reminder_1"),
        (ACME.invoice_id, "reminder_1"),  # the one message in doubt, once more
        (TOKYO.invoice_id, "reminder_1"),
    ]
    again, original = smtp_server.received[1], smtp_server.received[0]
    assert again.message_id == original.message_id
    assert again.data == original.data  # the same bytes: a duplicate, not a second message
    row = world.outbox.get(ACME.invoice_id, "reminder_1")
    assert (row.status, row.attempts) == ("sent", 2)
    for n in (1, 2, 3):
        world.run(day(n, hour=18), transport)
    assert len(smtp_server.received) == 3  # and nothing ever again
