"""Fault injection for tests that run meterbook in other processes (the CLI, Dagster's run
workers). Python imports this module at start-up when this folder is on PYTHONPATH; it does
nothing unless the test also sets the variable below, so product code carries no test hooks.

METERBOOK_TEST_SLEEP_IN_FINALIZE=SECONDS: finalize sleeps inside its transaction after every
insert and before COMMIT, printing one line first, so a test can SIGKILL the process there and
prove nothing is half-written, or hold the warehouse lock while another process waits.

METERBOOK_TEST_KILL_AFTER_SEND=1: the first webhook delivery the receiver accepted kills the
process (exit status 137, as a SIGKILL would, without flushing or cleaning up) just before the
outbox records it, so a test can prove a re-run re-sends it with the same Idempotency-Key.
"""

from __future__ import annotations

import os

SLEEP_IN_FINALIZE = "METERBOOK_TEST_SLEEP_IN_FINALIZE"
KILL_AFTER_SEND = "METERBOOK_TEST_KILL_AFTER_SEND"


def _sleep_before_commit(seconds: float) -> None:
    import time  # noqa: PLC0415 - only in processes that asked for the fault

    from orchestration.billing import finalize  # noqa: PLC0415

    record = finalize._record_finalization  # the last insert of the transaction

    def record_then_sleep(*args, **kwargs):
        record(*args, **kwargs)
        print(f"finalize: sleeping {seconds}s inside the transaction", flush=True)
        time.sleep(seconds)

    finalize._record_finalization = record_then_sleep


def _die_before_recording_a_delivery() -> None:
    from orchestration.billing.alerts.outbox import Outbox  # noqa: PLC0415

    def die(self, key, *args, **kwargs):
        print(f"webhooks: killed after {key} was answered, before it was recorded", flush=True)
        os._exit(137)

    Outbox.mark_delivered = die


if os.environ.get(SLEEP_IN_FINALIZE):
    _sleep_before_commit(float(os.environ[SLEEP_IN_FINALIZE]))
if os.environ.get(KILL_AFTER_SEND):
    _die_before_recording_a_delivery()
