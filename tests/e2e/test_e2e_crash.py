"""A close or a finalize SIGKILLed mid-run leaves nothing half-written; the next run completes.

The closes of one fresh workspace are killed at later and later moments: 0.5 s in, in the
ingest, in the billing dbt build (e2e_helpers.KILL_POINTS, ORPHAN_POINT); then the workspace is
closed to the end and compared with a clean close. The finalize is killed inside its
transaction (tests/fault_injection: METERBOOK_TEST_SLEEP_IN_FINALIZE), then run again.
"""

from __future__ import annotations

import json

import pytest
from e2e_helpers import KILL_POINTS, ORPHAN_POINT, assert_ledger_consistent, assert_same_as

pytestmark = pytest.mark.slow


def test_every_kill_releases_the_workspace_and_leaves_no_duplicates(killed_closes):
    moments = [k.moment for k in killed_closes.after_kills]
    assert moments == [m for m, _ in (*KILL_POINTS, ORPHAN_POINT)]
    for state in killed_closes.after_kills:
        assert state.lock_free, f"lock still held after the kill {state.moment}"
        if state.duplicates is not None:
            assert state.duplicates == {k: [] for k in state.duplicates}, state.moment


def test_a_writer_started_after_the_kill_waits_for_the_killed_close_s_dbt(killed_closes):
    # The close alone was killed; its dbt child may still hold the warehouse open. Anyone who
    # then takes the workspace lock must get the warehouse (after waiting), not a DuckDB error.
    assert killed_closes.writer_probe_error is None, (
        f"a writer holding the workspace lock could not open the warehouse "
        f"({killed_closes.writer_probe_error}); processes of the killed close still alive: "
        f"{[cmd for _, cmd in killed_closes.orphans if 'dbt' in cmd]}"
    )


def test_the_close_after_the_kills_completes(killed_closes):
    assert killed_closes.final_close.returncode == 0, killed_closes.final_close.describe()


def test_the_close_after_the_kills_ends_exactly_like_a_clean_close(killed_closes, reference):
    assert killed_closes.final is not None, "the close after the kills failed"
    assert_same_as(reference, killed_closes.final.home, killed_closes.final.invoices_json)


def test_a_finalize_killed_before_commit_leaves_the_ledger_empty(killed_finalize):
    killed = killed_finalize
    assert killed.ledger_after_kill["counts"] == {k: 0 for k in killed.ledger_after_kill["counts"]}
    assert killed.ledger_after_kill["numbers"] == []
    assert killed.lock_free_after_kill


def test_finalize_after_the_kill_numbers_every_draft_once_without_gaps(killed_finalize):
    killed = killed_finalize
    assert killed.refinalize.returncode == 0, killed.refinalize.describe()
    document = json.loads(killed.invoices_json)
    assert_ledger_consistent(killed.ledger, document)
    assert killed.ledger["counts"]["period_finalizations"] == 1
    assert killed.invoices_json == killed.expected_json


def test_the_wallet_ledger_after_a_killed_finalize_is_the_clean_close_s(killed_finalize):
    # SPEC 7: finalization freezes the draft draws as they are; a second finalize adds nothing
    killed = killed_finalize
    assert killed.draft_wallet_entries, "the e2e workspace should have wallet entries"
    assert killed.ledger["wallet_entries"] == killed.draft_wallet_entries
    assert killed.ledger_after_second_finalize == killed.ledger


def test_the_runs_of_killed_closes_are_marked_failed_by_the_next_command(killed_closes):
    # SIGKILL leaves no chance to record anything; the next command notices the dead process
    # (the kill 0.5 s after start may come before the run exists)
    statuses = sorted(killed_closes.runs_after.values())
    assert statuses[-1] == "SUCCESS" and set(statuses[:-1]) == {"FAILURE"}, statuses
    assert len(statuses) - 1 >= len(KILL_POINTS), statuses


def test_sigterm_stops_a_close_as_a_failed_run(terminated):
    stopped = terminated.stopped
    assert stopped.returncode == 130, stopped.describe()
    assert "stopped by a signal; the Dagster run " in stopped.last_error_line
    assert "was marked failed" in stopped.last_error_line
    # seconds, not the rest of the close (a generous bound for a busy machine)
    assert terminated.seconds_to_exit < 30, terminated.seconds_to_exit
    assert list(terminated.runs_after_stop.values()) == ["FAILURE"]
    assert terminated.lock_free


def test_a_close_after_sigterm_completes(terminated):
    assert terminated.next_close.returncode == 0, terminated.next_close.describe()
