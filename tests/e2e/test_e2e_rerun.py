"""Re-running a close is a no-op: a copy of the closed reference workspace, closed again."""

from __future__ import annotations

import pytest
from e2e_helpers import assert_same_as

pytestmark = pytest.mark.slow


def test_closing_twice_prints_byte_identical_invoices(rerun, reference):
    assert rerun.invoices_json == reference.invoices_json


def test_closing_twice_leaves_every_mart_row_and_document_as_it_was(rerun, reference):
    assert_same_as(reference, rerun.home, rerun.invoices_json)


def test_the_second_ingest_reads_nothing_again(rerun, reference):
    rows, before = rerun.rows, reference.rows
    for table in ("meterbook_raw.raw_events", "meterbook_raw.landing_files"):
        assert before[table], f"{table} is empty: the reference ingested nothing"
        assert len(rows[table]) == len(before[table]), f"{table} grew on the re-run"
    assert rows["meterbook_raw.landing_file_paths"] == before["meterbook_raw.landing_file_paths"]
