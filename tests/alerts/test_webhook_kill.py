"""The process killed between the receiver's 200 and the outbox's record of it: the row stays
pending, and the next delivery sends the same bytes under the same key, never a new one.

The delivery runs in a subprocess whose PYTHONPATH starts with tests/fault_injection: its
sitecustomize.py (METERBOOK_TEST_KILL_AFTER_SEND) makes `Outbox.mark_delivered` end the
process with os._exit(137), as abruptly as a SIGKILL: no cleanup, no flush, no rollback
handler runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from alert_fixtures import SECRET, queue, spend

from integrations.webhooks import deliver_pending, verify
from orchestration.workspace import PROJECT_ROOT

FAULTS = Path(__file__).resolve().parents[1] / "fault_injection"

DELIVER = """
import os, sys
from integrations.webhooks import deliver_pending
from orchestration.billing.alerts import Outbox
deliver_pending(Outbox(sys.argv[1]), sys.argv[2], os.environ["METERBOOK_WEBHOOK_SECRET"])
print("delivered without being killed")
"""


def _deliver_in_a_process(outbox, url: str, *, kill_after_send: bool):
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(FAULTS), str(PROJECT_ROOT)]),
        "METERBOOK_WEBHOOK_SECRET": SECRET,
    }
    env.pop("METERBOOK_TEST_KILL_AFTER_SEND", None)
    if kill_after_send:
        env["METERBOOK_TEST_KILL_AFTER_SEND"] = "1"
    return subprocess.run(
        [sys.executable, "-c", DELIVER, str(outbox.path), url],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_killed_after_the_receiver_answered_resends_with_the_same_key(outbox, receiver):
    first, second = queue(outbox, spend("130.00"), spend("60.00", subscription="sub_b"))

    killed = _deliver_in_a_process(outbox, receiver.url, kill_after_send=True)
    assert killed.returncode == 137, killed.stderr
    assert f"killed after {first.key} was answered" in killed.stdout
    assert "without being killed" not in killed.stdout
    assert receiver.keys() == [first.key]  # the receiver has it...
    rows = {row.key: row for row in outbox.rows()}
    assert (rows[first.key].status, rows[first.key].attempts) == ("pending", 0)  # ...we don't
    assert rows[second.key].status == "pending"

    report = deliver_pending(outbox, receiver.url, SECRET)
    assert report.delivered == 2
    assert receiver.keys() == [first.key, first.key, second.key]  # a re-send, no new key
    resent, original = receiver.requests[1], receiver.requests[0]
    assert resent.body == original.body == first.body()
    assert resent.headers["meterbook-signature"] == original.headers["meterbook-signature"]
    assert verify(SECRET, resent.body, resent.headers["meterbook-signature"])
    assert {row.status for row in outbox.rows()} == {"delivered"}


def test_without_the_fault_the_same_process_delivers(outbox, receiver):
    # the fault is opt-in: the sitecustomize on the path changes nothing by itself
    [only] = queue(outbox, spend("60.00"))
    done = _deliver_in_a_process(outbox, receiver.url, kill_after_send=False)
    assert done.returncode == 0, done.stderr
    assert receiver.keys() == [only.key]
    assert outbox.rows()[0].status == "delivered"
