"""Two closes of the same month launched together, and a finalize racing a close.

Each `meterbook` writer takes the workspace lock (orchestration/locking.py) before it opens the
warehouse, so the second waits; if it gives up it must say so in one line. Either way the
workspace must end exactly as one clean close leaves it (fixtures in conftest.py).
"""

from __future__ import annotations

import json

import pytest
from e2e_helpers import (
    assert_ledger_consistent,
    assert_ok_or_clearly_busy,
    assert_same_as,
    duplicated_mart_rows,
)

pytestmark = pytest.mark.slow


def test_two_closes_at_once_both_succeed_or_one_says_the_workspace_is_busy(concurrent_closes):
    for done in concurrent_closes.runs:
        assert_ok_or_clearly_busy(done, "close")
    assert any(done.returncode == 0 for done in concurrent_closes.runs)


def test_two_closes_at_once_end_exactly_like_one_clean_close(concurrent_closes, reference):
    assert json.loads(reference.invoices_json)["invoices"], "the scenario must bill something"
    invoices = concurrent_closes.invoices
    assert invoices.returncode == 0, invoices.describe()
    assert_same_as(reference, concurrent_closes.home, invoices.stdout)


def test_two_closes_at_once_leave_no_duplicated_rows(concurrent_closes):
    duplicates = duplicated_mart_rows(concurrent_closes.home)
    assert duplicates == {name: [] for name in duplicates}


def test_finalize_racing_a_close_both_finish_or_one_says_the_workspace_is_busy(race):
    assert_ok_or_clearly_busy(race.close, "close")
    # a finalize that runs while the close rebuilds the drafts refuses them (freshness.py)
    assert_ok_or_clearly_busy(race.finalize, "finalize", "were not completely built")


def test_finalize_racing_a_close_numbers_every_draft_once_without_gaps(race):
    document = json.loads(race.invoices_json)
    assert_ledger_consistent(race.ledger, document)
    if race.finalize.returncode == 0:
        # whichever ran first, the frozen invoices are the drafts of the clean close, numbered
        assert race.invoices_json == race.expected_json
    else:  # it gave up waiting: nothing may be in the ledger
        assert race.ledger["counts"]["invoices"] == 0
        assert all(inv["status"] == "draft" for inv in document["invoices"])
