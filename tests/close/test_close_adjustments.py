"""Late usage for a finalized month becomes adjustment lines on the next invoice, once."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from close_fixtures import catalog, drafts, with_adjustments

from orchestration.billing.adjustments import (
    late_event_customers,
    months_to_rerate,
    record_rerated_usage,
    write_adjustment_lines,
)
from orchestration.billing.finalize import finalize_period, void_invoice
from orchestration.sql import connect

NOV5, DEC5, JAN5 = (datetime(y, m, 5, tzinfo=UTC) for y, m in ((2026, 11), (2026, 12), (2027, 1)))


@pytest.fixture
def con(tmp_path):
    con = connect(tmp_path / "warehouse.duckdb")
    yield con
    con.close()


def table(con, month):
    rows = con.execute(
        "SELECT subscription_id, meter, group_key, period_start, period_end, quantity, amount "
        "FROM meterbook_billing.adjustment_lines WHERE close_month = ? ORDER BY ALL",
        [month],
    ).fetchall()
    return [
        (s, m, g, str(a), str(b), q if q is None else q.normalize(), x.normalize())
        for s, m, g, a, b, q, x in rows
    ]


def simple(result):
    return [(r["subscription_id"], r["meter"], r["quantity"], r["amount"]) for r in result.written]


def finalize_october(con):
    finalize_period(con, catalog(), "2026-10", NOV5, drafts=drafts(calls=12, tokens=4500))


def test_a_late_difference_becomes_one_adjustment_line_per_meter_and_group(con):
    finalize_october(con)
    # re-rated October: 3 more calls for everyone, 500 more large tokens for acme
    record_rerated_usage(con, "2026-10", NOV5, drafts=drafts(calls=15, tokens=5000))
    result = write_adjustment_lines(con, catalog(), "2026-11")
    assert simple(result) == [
        ("sub_acme", "api_calls", Decimal(3), Decimal("0.30")),
        ("sub_acme", "tokens", Decimal(500), Decimal("1.00")),
        ("sub_tokyo", "api_calls", Decimal(3), Decimal("1")),  # 5.25 -> 5 minus 4.2 -> 4
    ]
    assert table(con, "2026-11") == [
        ("sub_acme", "api_calls", None, "2026-10-01", "2026-11-01", 3, Decimal("0.3")),
        ("sub_acme", "tokens", '{"model":"large"}', "2026-10-01", "2026-11-01", 500, 1),
        ("sub_tokyo", "api_calls", None, "2026-10-01", "2026-11-01", 3, 1),
    ]
    tokens = result.written[1]
    assert tokens["description"] == "Late usage for 2026-10-01 to 2026-11-01: LLM tokens (large)"
    assert tokens["line_id"].startswith("adj_")
    # a re-close of the still-draft November writes exactly the same rows
    again = write_adjustment_lines(con, catalog(), "2026-11")
    assert again.written == result.written
    assert len(table(con, "2026-11")) == 3


def test_no_difference_no_line(con):
    finalize_october(con)
    record_rerated_usage(con, "2026-10", NOV5, drafts=drafts(calls=12, tokens=4500))
    assert write_adjustment_lines(con, catalog(), "2026-11").written == ()
    assert table(con, "2026-11") == []


def test_an_adjustment_is_never_billed_twice(con):
    finalize_october(con)
    record_rerated_usage(con, "2026-10", NOV5, drafts=drafts(calls=15))
    november = write_adjustment_lines(con, catalog(), "2026-11")
    finalize_period(
        con,
        catalog(),
        "2026-11",
        DEC5,
        drafts=with_adjustments(drafts("2026-11"), november.written),
    )
    # December: nothing new arrived for October, so nothing more is billed
    assert write_adjustment_lines(con, catalog(), "2026-12").written == ()
    # then two more October calls arrive: only those two are billed in December
    record_rerated_usage(con, "2026-10", DEC5, drafts=drafts(calls=17))
    december = write_adjustment_lines(con, catalog(), "2026-12")
    assert simple(december) == [
        ("sub_acme", "api_calls", Decimal(2), Decimal("0.20")),
        ("sub_tokyo", "api_calls", Decimal(2), Decimal("1")),  # 17*0.35 = 5.95 -> 6, 5 billed
    ]


def test_adjustments_of_a_voided_invoice_move_to_the_next_one(con):
    finalize_october(con)
    record_rerated_usage(con, "2026-10", NOV5, drafts=drafts(calls=15))
    november = write_adjustment_lines(con, catalog(), "2026-11")
    result = finalize_period(
        con,
        catalog(),
        "2026-11",
        DEC5,
        drafts=with_adjustments(drafts("2026-11"), november.written),
    )
    acme_november = result.numbered[0][0]
    void_invoice(con, acme_november, "wrong address", DEC5)
    december = write_adjustment_lines(con, catalog(), "2026-12")
    assert simple(december) == [("sub_acme", "api_calls", Decimal(3), Decimal("0.30"))]


def test_a_voided_source_invoice_gets_no_adjustment(con):
    result = finalize_period(con, catalog(), "2026-10", NOV5, drafts=drafts(calls=12))
    void_invoice(con, result.numbered[0][0], "cancelled", NOV5)
    record_rerated_usage(con, "2026-10", NOV5, drafts=drafts(calls=15))
    rows = write_adjustment_lines(con, catalog(), "2026-11").written
    assert [r["subscription_id"] for r in rows] == ["sub_tokyo"]


def test_an_ended_subscription_reports_its_difference_as_unbillable(con):
    finalize_october(con)
    record_rerated_usage(con, "2026-10", NOV5, drafts=drafts(calls=15))
    ended = catalog()
    subs = [
        s.model_copy(update={"end_date": datetime(2026, 11, 1).date()})
        if s.id == "sub_tokyo"
        else s
        for s in ended.subscriptions
    ]
    ended = ended.model_copy(update={"subscriptions": subs})
    result = write_adjustment_lines(con, ended, "2026-11")
    assert [r["subscription_id"] for r in result.written] == ["sub_acme"]
    assert [(r["subscription_id"], r["amount"]) for r in result.unbillable] == [
        ("sub_tokyo", Decimal(1))
    ]


def test_a_subscription_missing_from_the_rerate_is_not_credited(con):
    finalize_october(con)
    rerated = drafts(calls=12)
    rerated["invoices"] = [i for i in rerated["invoices"] if i["subscription_id"] != "sub_acme"]
    record_rerated_usage(con, "2026-10", NOV5, drafts=rerated)
    assert write_adjustment_lines(con, catalog(), "2026-11").written == ()


def test_only_earlier_months_are_sources(con):
    finalize_october(con)
    record_rerated_usage(con, "2026-10", NOV5, drafts=drafts(calls=15))
    assert write_adjustment_lines(con, catalog(), "2026-10").written == ()
    assert write_adjustment_lines(con, catalog(), "2026-09").written == ()


def make_raw_events(con, *events):
    con.execute("CREATE SCHEMA IF NOT EXISTS meterbook_raw")
    con.execute(
        "CREATE TABLE IF NOT EXISTS meterbook_raw.raw_events "
        "(read_seq BIGINT, event_ts TIMESTAMPTZ, parse_reason VARCHAR, customer_id VARCHAR)"
    )
    for event in events:
        row = [*event, "acme"][:4]  # the customer defaults to acme
        con.execute("INSERT INTO meterbook_raw.raw_events VALUES (?, ?, ?, ?)", row)


def test_months_to_rerate_follow_new_raw_events_of_finalized_periods(con):
    assert months_to_rerate(con, "2026-11") == []  # nothing finalized, no raw events
    make_raw_events(con, (1, datetime(2026, 10, 3, tzinfo=UTC), None))
    finalize_october(con)  # watermark: read_seq 1
    assert months_to_rerate(con, "2026-11") == []
    make_raw_events(
        con,
        (2, datetime(2026, 11, 3, tzinfo=UTC), None),  # November usage: not late
        (3, datetime(2026, 10, 9, tzinfo=UTC), "malformed"),  # unusable
    )
    assert months_to_rerate(con, "2026-11") == []
    make_raw_events(con, (4, datetime(2026, 10, 9, tzinfo=UTC), None))
    assert months_to_rerate(con, "2026-11") == ["2026-10"]
    assert months_to_rerate(con, "2026-10") == []  # only months before the close month
    record_rerated_usage(con, "2026-10", NOV5, drafts=drafts(calls=13))  # watermark: 4
    assert months_to_rerate(con, "2026-11") == []
    make_raw_events(con, (5, datetime(2026, 10, 31, 23, tzinfo=UTC), None))
    assert months_to_rerate(con, "2026-12") == ["2026-10"]
    make_raw_events(con, (6, datetime(2026, 10, 20, tzinfo=UTC), None, "globex"))
    # the customers of the late events, for the re-rate's scope
    assert late_event_customers(con, "2026-12") == {"2026-10": frozenset({"acme", "globex"})}
