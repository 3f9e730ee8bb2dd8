"""Re-running a close is a no-op: a copy of the closed reference workspace, closed again."""

from __future__ import annotations

import json

import pytest
from e2e_helpers import PERIOD, assert_same_as, run_ok

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


def test_verify_passes_and_each_usage_line_lists_its_events(rerun):
    # after the re-run: the full check over everything stored, and lineage found on demand
    done = run_ok(rerun.home, "verify", "--json")
    report = json.loads(done.stdout)
    assert report["passed"], done.stdout
    assert f"events_in_one_line {PERIOD}" in report["checks"]
    lines = [
        line
        for invoice in json.loads(rerun.invoices_json)["invoices"]
        for line in invoice["lines"]
        if line["kind"] == "usage" and line["event_count"]
    ]
    assert lines
    for line in lines:
        shown = run_ok(rerun.home, "invoices", "--line", line["line_id"], "--events", "--json")
        events = json.loads(shown.stdout)["events"]
        assert len(events) == line["event_count"], line["line_id"]
        assert len({(e["customer_id"], e["event_id"]) for e in events}) == len(events)
        assert all(e["path"] and e["line_no"] for e in events)
