"""The design-floor benchmark measures only what computes the right answer: each design's
daily rows must add up to the bare query's, or its timing means nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_design_floor as floor  # noqa: E402
from bench_ingest import generate_events  # noqa: E402


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("design-floor") / "events.jsonl"
    generate_events(path, 20_000)
    return path


@pytest.mark.parametrize("design", ["read back", "values at ingest"])
def test_each_design_adds_up_to_the_bare_query(events_file, tmp_path, design):
    _, expected = floor.run_bare(events_file, "1GB")
    steps = floor.designs(events_file)[design]
    _, result = floor.run_design(steps, tmp_path / "design.duckdb", "1GB")
    rows, total = result
    assert rows > 0 and total > 0
    assert result == expected


def test_a_design_that_drops_the_dedupe_does_not_add_up(events_file, tmp_path):
    """The 2% duplicates must show: without the key ranks the sum comes out larger."""
    _, expected = floor.run_bare(events_file, "1GB")
    steps = floor.designs(events_file)["values at ingest"]
    no_dedupe = [(label, sql.replace("coalesce(key_rank, 1) = 1", "true")) for label, sql in steps]
    _, result = floor.run_design(no_dedupe, tmp_path / "design.duckdb", "1GB")
    assert result[1] > expected[1]


def test_our_parse_reads_every_record(events_file):
    _, records = floor.run_our_parse(events_file, "1GB")
    assert records == 20_000
