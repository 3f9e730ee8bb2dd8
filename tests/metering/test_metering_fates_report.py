"""`meterbook events`: the SPEC 6 document over the warehouse of conftest.py."""

from __future__ import annotations

import json

import duckdb
import pytest

from orchestration.ingest.fates_report import (
    FATES,
    NoFatesYet,
    events_report,
    format_events_report,
    month_bounds,
)


@pytest.fixture(scope="module")
def report(built):
    with built.connect() as con:
        return {p: events_report(con, p) for p in (None, "2026-10", "2026-09", "2027-01")}


def test_totals_and_reasons(report):
    all_periods = report[None]
    assert all_periods["period"] is None
    assert all_periods["fates"] == {
        "billable": 30,
        "unmetered": 2,
        "excluded": 3,
        "duplicate": 3,
        "conflict": 1,
        "rejected": 7,
    }
    assert all_periods["lines_read"] == 46
    assert all_periods["reasons"] == {
        "excluded": {"failed_request": 1, "internal": 1, "sandbox": 1},
        "rejected": {
            "bad_property": 2,
            "bad_timestamp": 1,
            "malformed": 1,
            "too_far_in_future": 1,
            "unknown_customer": 2,
        },
    }
    assert list(all_periods) == ["period", "lines_read", "fates", "reasons", "files", "held"]
    assert list(all_periods["fates"]) == list(FATES)


@pytest.mark.parametrize("period", [None, "2026-10", "2026-09", "2027-01"])
def test_lines_read_is_the_sum_of_fates_overall_and_per_file(report, period):
    doc = report[period]
    assert doc["lines_read"] == sum(doc["fates"].values())
    assert sum(f["lines_read"] for f in doc["files"]) == doc["lines_read"]
    for entry in doc["files"]:
        assert entry["lines_read"] == sum(entry["fates"].values())
        assert len(entry["sha256"]) == 64


def test_files(report):
    files = report[None]["files"]
    assert [(f["path"], f["lines_read"]) for f in files] == [("events.jsonl", 44), ("b.jsonl", 2)]
    assert files[1]["fates"] == dict.fromkeys(FATES, 0) | {"billable": 1, "duplicate": 1}


def test_held_events_with_file_line_and_reason(report):
    held = report[None]["held"]
    assert held[:3] == [
        {"fate": "conflict", "reason": "different_payload", "path": "events.jsonl", "line": 5},
        {"fate": "rejected", "reason": "unknown_customer", "path": "events.jsonl", "line": 10},
        {"fate": "rejected", "reason": "malformed", "path": "events.jsonl", "line": 11},
    ]
    assert len(held) == 8  # 7 rejected + 1 conflict
    assert {h["fate"] for h in held} == {"rejected", "conflict"}


def test_a_period_counts_only_events_in_that_utc_month(report):
    october = report["2026-10"]
    # 46 lines, less 2 without a valid timestamp, 2 in September, 1 on 11-01 00:00 UTC
    assert october["lines_read"] == 41
    assert october["fates"]["billable"] == 27
    assert october["fates"]["rejected"] == 5
    assert "malformed" not in october["reasons"]["rejected"]
    assert report["2026-09"]["fates"] == dict.fromkeys(FATES, 0) | {"billable": 2}
    assert [f["path"] for f in report["2026-09"]["files"]] == ["events.jsonl"]
    empty = report["2027-01"]
    assert (empty["lines_read"], empty["files"], empty["held"]) == (0, [], [])
    assert empty["reasons"] == {"excluded": {}, "rejected": {}}


def test_report_is_json(report):
    assert json.loads(json.dumps(report[None])) == report[None]


def test_text_form(report):
    text = format_events_report(report[None])
    assert text.splitlines()[0] == "Events, all periods: 46 lines read"
    assert "sandbox 1" in text
    assert "b.jsonl: 2 lines: billable 1, duplicate 1" in text
    assert "rejected  malformed" in text and "events.jsonl:11" in text
    assert "2026-10 (UTC)" in format_events_report(report["2026-10"])


@pytest.mark.parametrize("period", ["2026-1", "2026-13", "x", "2026-10-01"])
def test_bad_period(period):
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_bounds(period)


def test_december_ends_in_january():
    start, end = month_bounds("2026-12")
    assert (start.isoformat(), end.isoformat()) == (
        "2026-12-01T00:00:00+00:00",
        "2027-01-01T00:00:00+00:00",
    )


def test_a_warehouse_without_fates_gets_a_clear_error():
    with duckdb.connect() as con, pytest.raises(NoFatesYet, match="fct_event_fates"):
        events_report(con, None)
