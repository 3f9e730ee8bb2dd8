"""The reconciliation checks and lineage on hand-made marts: they pass on consistent data and
name each kind of inconsistency (on a real close they run in the end-to-end test)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from close_fixtures import catalog, drafts

from orchestration.billing.finalize import finalize_period
from orchestration.billing.invoice_checks import check_invoice_totals, invoice_problems
from orchestration.billing.lineage import line_events
from orchestration.billing.reconciliation import (
    check_events_in_one_line,
    check_ledger,
    check_meter_totals,
)
from orchestration.sql import connect

OCT = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
LARGE = json.dumps({"model": "large"})

DDL = """
CREATE SCHEMA marts; CREATE SCHEMA intermediate; CREATE SCHEMA meterbook_billing;
CREATE SCHEMA meterbook_raw;
CREATE TABLE meterbook_billing.meter_windows (close_month VARCHAR, window_id VARCHAR,
    billing_customer_id VARCHAR, window_start TIMESTAMPTZ, window_end TIMESTAMPTZ);
CREATE TABLE meterbook_billing.segments (close_month VARCHAR, invoice_id VARCHAR,
    period_role VARCHAR, window_id VARCHAR, segment_start DATE, segment_end DATE);
CREATE TABLE marts.fct_invoice_lines (close_month VARCHAR, invoice_id VARCHAR, line_id VARCHAR,
    kind VARCHAR, meter VARCHAR, group_key JSON, period_start DATE, period_end DATE,
    quantity DECIMAL(38, 12), event_count BIGINT);
CREATE TABLE marts.fct_period_meter_quantities (close_month VARCHAR, window_id VARCHAR,
    billing_customer_id VARCHAR, meter_code VARCHAR, group_key JSON,
    quantity DECIMAL(38, 12), event_count BIGINT);
CREATE TABLE intermediate.int_events_metered (read_seq BIGINT, event_id VARCHAR,
    customer_id VARCHAR, billing_customer_id VARCHAR, event_ts TIMESTAMPTZ, meter_code VARCHAR,
    group_key JSON, value DECIMAL(38, 12),
    event_date DATE GENERATED ALWAYS AS (CAST(timezone('UTC', event_ts) AS DATE)));
CREATE TABLE meterbook_raw.raw_events (read_seq BIGINT, path VARCHAR, line_no BIGINT,
    event_ts TIMESTAMPTZ, parse_reason VARCHAR);
"""


def at(day: int) -> datetime:
    return datetime(2026, 10, day, 12, tzinfo=UTC)


@pytest.fixture
def con(tmp_path):
    """acme's October invoice in two segments (a price change on the 16th): api_calls and
    tokens (grouped by model) lines per segment; a sub-account's events bill to acme."""
    con = connect(tmp_path / "warehouse.duckdb")
    con.execute(DDL)
    con.executemany(
        "INSERT INTO meterbook_billing.meter_windows VALUES ('2026-10', ?, 'acme', ?, ?)",
        [
            ["w1", OCT[0], datetime(2026, 10, 16, tzinfo=UTC)],
            ["w2", datetime(2026, 10, 16, tzinfo=UTC), OCT[1]],
        ],
    )
    con.executemany(
        "INSERT INTO meterbook_billing.segments VALUES ('2026-10', 'inv_a', ?, ?, ?, ?)",
        [
            ["current", "w1", "2026-10-01", "2026-10-16"],
            ["current", "w2", "2026-10-16", "2026-11-01"],
            ["next", None, "2026-11-01", "2026-12-01"],
        ],
    )
    events = [  # read_seq, event_id, customer, ts, meter, group
        (1, "e1", "acme", at(2), "api_calls", None),
        (2, "e2", "acme-research", at(3), "api_calls", None),
        (3, "e3", "acme", at(20), "api_calls", None),
        (4, "t1", "acme", at(4), "tokens", LARGE),
        (5, "t2", "acme", at(21), "tokens", LARGE),
        (6, "x1", "acme", datetime(2026, 9, 30, tzinfo=UTC), "api_calls", None),  # September
    ]
    con.executemany(
        "INSERT INTO intermediate.int_events_metered VALUES (?, ?, ?, 'acme', ?, ?, ?, 1)", events
    )
    con.executemany(
        "INSERT INTO meterbook_raw.raw_events VALUES (?, ?, ?, ?, NULL)",
        [[seq, "2026/10/usage.jsonl", seq + 10, ts] for seq, _, _, ts, _, _ in events],
    )
    lines = [  # line, meter, group, start, end, quantity, events
        ("l_calls_1", "api_calls", None, "2026-10-01", "2026-10-16", 2, 2),
        ("l_calls_2", "api_calls", None, "2026-10-16", "2026-11-01", 1, 1),
        ("l_tok_1", "tokens", LARGE, "2026-10-01", "2026-10-16", 1, 1),
        ("l_tok_2", "tokens", LARGE, "2026-10-16", "2026-11-01", 1, 1),
    ]
    con.executemany(
        "INSERT INTO marts.fct_invoice_lines VALUES ('2026-10', 'inv_a', ?, 'usage', ?, ?, ?, ?, ?, ?)",
        lines,
    )
    con.execute(
        "INSERT INTO marts.fct_invoice_lines VALUES ('2026-10', 'inv_a', 'l_fee', 'fixed_fee', NULL, NULL, '2026-11-01', '2026-12-01', 1, NULL)"
    )
    window = {"2026-10-01": "w1", "2026-10-16": "w2"}
    con.executemany(
        "INSERT INTO marts.fct_period_meter_quantities VALUES ('2026-10', ?, 'acme', ?, ?, ?, ?)",
        [[window[start], meter, group, q, n] for _, meter, group, start, _, q, n in lines],
    )
    yield con
    con.close()


def test_consistent_marts_pass_every_check(con):
    passed, meta = check_events_in_one_line(con, "2026-10")
    assert passed, meta
    assert meta["billable_events"] == 5 and meta["events_in_lines"] == 5
    assert meta["value_sums"] == {"api_calls": "3.000000000000", "tokens": "2.000000000000"}
    passed, meta = check_meter_totals(con, "2026-10")
    assert passed, meta
    assert meta["usage_lines"] == 4


def test_line_events_lists_keys_and_where_they_were_read(con):
    events = line_events(con, "l_calls_1")
    assert [(e["customer_id"], e["event_id"], e["path"], e["line_no"]) for e in events] == [
        ("acme", "e1", "2026/10/usage.jsonl", 11),
        ("acme-research", "e2", "2026/10/usage.jsonl", 12),
    ]
    assert line_events(con, "l_fee") == []


def test_events_of_a_group_without_a_line_are_named(con):
    con.execute(
        "INSERT INTO intermediate.int_events_metered VALUES "
        "(8, 't3', 'acme', 'acme', ?, 'tokens', ?, 1)",
        [at(5), json.dumps({"model": "small"})],
    )
    passed, meta = check_events_in_one_line(con, "2026-10")
    assert not passed
    assert meta["missing_from_lines"] == 1
    assert meta["problems"] == [
        'inv_a w1 tokens {"model": "small"}: 1 billable events in no usage line'
    ]


def test_an_event_count_that_differs_from_the_events_is_caught(con):
    con.execute("UPDATE marts.fct_invoice_lines SET event_count = 1 WHERE line_id = 'l_calls_1'")
    passed, meta = check_events_in_one_line(con, "2026-10")
    assert not passed
    assert meta["problems"] == ["inv_a w1 api_calls: event_count 1 but 2 billable events"]


def test_two_lines_for_one_window_meter_and_group_are_caught(con):
    con.execute(
        "INSERT INTO marts.fct_invoice_lines SELECT * REPLACE ('l_calls_1b' AS line_id) "
        "FROM marts.fct_invoice_lines WHERE line_id = 'l_calls_1'"
    )
    passed, meta = check_events_in_one_line(con, "2026-10")
    assert not passed and meta["in_several_lines"] == 2


def test_an_event_the_line_does_not_count_is_caught(con):
    con.execute(
        "INSERT INTO intermediate.int_events_metered SELECT * EXCLUDE (event_date) "
        "REPLACE (9 AS read_seq, 'e9' AS event_id) FROM intermediate.int_events_metered "
        "WHERE event_id = 'e1'"
    )
    passed, meta = check_events_in_one_line(con, "2026-10")
    assert not passed
    assert meta["problems"] == ["inv_a w1 api_calls: event_count 2 but 3 billable events"]


def test_a_line_quantity_that_differs_from_metering_is_caught(con):
    con.execute("UPDATE marts.fct_invoice_lines SET quantity = 3 WHERE line_id = 'l_calls_1'")
    passed, meta = check_meter_totals(con, "2026-10")
    assert not passed
    assert meta["samples"] == [
        "l_calls_1 (api_calls  in w1): line 3.000000000000 (2 events), metered 2.000000000000 (2 events)"
    ]


def test_a_metered_group_without_a_line_is_caught(con):
    con.execute(
        "INSERT INTO marts.fct_period_meter_quantities VALUES ('2026-10', 'w1', 'acme', 'tokens', ?, 7, 1)",
        [json.dumps({"model": "small"})],
    )
    passed, meta = check_meter_totals(con, "2026-10")
    assert not passed
    assert "no usage line" in meta["samples"][0]


def test_invoice_problems_name_what_does_not_add_up():
    invoice = drafts()["invoices"][0]
    assert invoice_problems(invoice, Decimal("0.20")) == []
    assert invoice_problems(invoice, Decimal("0.10")) == [
        f"tax_total is {invoice['tax_total']} but should be 5.92"
    ]
    bad = {**invoice, "subtotal": "59.2"}
    assert invoice_problems(bad) == ["subtotal '59.2' does not have 2 decimals"]
    bad = {**invoice, "lines": invoice["lines"][:-1]}
    assert invoice_problems(bad) == ["subtotal is 59.20 but should be 10.20"]
    passed, meta = check_invoice_totals({"period": "2026-10", "invoices": [invoice, bad]})
    assert not passed and list(meta["failures"]) == [invoice["invoice_id"]]


def test_check_ledger_passes_after_finalize_and_catches_a_gap(tmp_path):
    con = connect(tmp_path / "ledger.duckdb")
    finalize_period(con, catalog(), "2026-10", datetime(2026, 11, 5, tzinfo=UTC), drafts=drafts())
    passed, meta = check_ledger(con)
    assert passed, meta
    con.execute("DELETE FROM meterbook_ledger.invoice_numbers WHERE number_seq = 2")
    passed, meta = check_ledger(con)
    assert not passed and meta["sequences_with_gaps"] == ["MB-2026: 2 numbers up to 3"]
    con.close()


def test_a_frozen_line_lists_only_events_ingested_before_its_finalization(con):
    october = drafts()
    october["invoices"][0]["lines"][0]["line_id"] = "l_calls_1"  # acme's api_calls line
    finalize_period(con, catalog(), "2026-10", datetime(2026, 11, 5, tzinfo=UTC), drafts=october)
    # a late event (read after finalization) lands in the re-rated lineage of the same line
    con.execute(
        "INSERT INTO meterbook_raw.raw_events VALUES (7, 'late.jsonl', 1, ?, NULL)", [at(9)]
    )
    con.execute(
        "INSERT INTO intermediate.int_events_metered VALUES "
        "(7, 'late1', 'acme', 'acme', ?, 'api_calls', NULL, 1)",
        [at(9)],
    )
    assert [e["event_id"] for e in line_events(con, "l_calls_1")] == ["e1", "e2"]
    assert [e["event_id"] for e in line_events(con, "l_calls_2")] == ["e3"]
