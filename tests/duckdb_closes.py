"""The DuckDB close of each shared scenario, done once in a test run for the tests that need it.

tests/scenarios/test_scenarios.py closes every shared scenario on DuckDB (and compares its
invoices with the expected ones); the Spark tier (tests/spark/test_close_on_spark.py) compares
a Spark close of each scenario with that same DuckDB close instead of closing it on DuckDB a
second time (a close costs 25-40 s of a core). Under pytest-xdist the two files run on two
workers: the first records each close, or its failure, as a file in the run's shared
temporary folder; the second waits for it.

    record(root, name, outcome_of(home, invoices))   # or record(root, name, error="...")
    wait_for(root, name)                              # the outcome, once it is recorded
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import duckdb
import pytest

# every event's fate as the close left it, the event named by its file and line (Spark's
# ingest numbers read_seq with wider gaps than DuckDB's), and the fate counts
FATES = (
    "SELECT r.path, r.line_no, f.billing_customer_id, f.event_date, f.fate, f.reason "
    "FROM intermediate.int_events_fated AS f JOIN meterbook_raw.raw_events AS r USING (read_seq) "
    "ORDER BY ALL"
)
FATE_COUNTS = "SELECT fate, reason, count(*) FROM marts.fct_event_fates GROUP BY ALL ORDER BY ALL"
# the scenario file closes 18 workspaces, two at a time, the shared ones first
WAIT_SECONDS = 1800


def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every worker of this test run sees (the run's base folder under xdist)."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "duckdb-closes"
    root.mkdir(exist_ok=True)
    return root


def outcome_of(home: Path, invoices: dict[str, str]) -> dict:
    """A closed workspace's invoices (`meterbook invoices --json` per period, as printed),
    every event's fate and the fate counts, as JSON values (dates as text)."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        fates = {
            "fates": con.execute(FATES).fetchall(),
            "counts": con.execute(FATE_COUNTS).fetchall(),
        }
    return json.loads(json.dumps({"invoices": invoices, **fates}, default=str))


def record(root: Path, name: str, outcome: dict | None = None, error: str | None = None) -> None:
    """Scenario `name`'s DuckDB close: its outcome, or why there is none."""
    partial = root / f"{name}.json.partial"
    partial.write_text(json.dumps({"outcome": outcome, "error": error}))
    partial.rename(root / f"{name}.json")  # a waiter never reads half a file


def recorded(root: Path, name: str) -> dict | None:
    """The outcome recorded for `name`, None when there is none yet; fails the test when the
    close failed."""
    path = root / f"{name}.json"
    if not path.exists():
        return None
    document = json.loads(path.read_text())
    if document["error"]:
        pytest.fail(f"the DuckDB close of {name} failed:\n{document['error']}")
    return document["outcome"]


def wait_for(root: Path, name: str, seconds: float = WAIT_SECONDS) -> dict:
    """The outcome of scenario `name`'s DuckDB close, waiting for another worker to record it
    (`seconds` from this worker's first wait: should that worker die, every wait ends then)."""
    if not _first_wait:
        _first_wait.append(time.monotonic())
    while (found := recorded(root, name)) is None:
        if time.monotonic() > _first_wait[0] + seconds:
            pytest.fail(f"no DuckDB close of {name} was recorded in {root} in {seconds:.0f} s")
        time.sleep(1)
    return found


_first_wait: list[float] = []
