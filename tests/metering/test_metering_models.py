"""The dbt models on the warehouse of conftest.py: fates, metered events, quantities."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from metering_dataset import CATALOG, EVENTS, WINDOWS
from metering_fixtures import Warehouse, catalog_from_yaml, ev, load_events

from orchestration.catalog.tables.metering import write_metering_tables
from orchestration.defs.dbt.runner import DbtRunError


def fates(wh: Warehouse) -> list[tuple]:
    return wh.rows(
        "SELECT event_id, customer_id, billing_customer_id, fate, reason "
        "FROM marts.fct_event_fates ORDER BY read_seq"
    )


def quantities(wh: Warehouse, window_id: str, meter: str) -> dict:
    """{group (dict or None): (quantity, event_count)} of one window and meter."""
    rows = wh.rows(
        "SELECT group_key, quantity, event_count FROM marts.fct_period_meter_quantities "
        "WHERE window_id = ? AND meter_code = ?",
        [window_id, meter],
    )
    return {(json.dumps(json.loads(g), sort_keys=True) if g else None): (q, n) for g, q, n in rows}


def quantity(wh: Warehouse, window_id: str, meter: str) -> Decimal:
    (only,) = quantities(wh, window_id, meter).values()
    return only[0]


def test_every_line_read_has_exactly_one_fate(built):
    raw = built.rows("SELECT count(*) FROM meterbook_raw.raw_events")[0][0]
    assert raw == len(EVENTS)
    assert len(fates(built)) == raw
    assert built.rows("SELECT count(DISTINCT read_seq) FROM marts.fct_event_fates")[0][0] == raw


def test_fates_in_spec_order(built):
    got = fates(built)[:19]
    assert got == [
        ("r1", "acme", "acme", "billable", None),
        ("r1", "acme-eu", "acme", "billable", None),  # a sub-account keeps its own key
        ("r1", "acme", "acme", "duplicate", "same_payload"),
        ("r2", "acme", "acme", "billable", None),
        ("r2", "acme", "acme", "conflict", "different_payload"),
        ("r3", "acme", "acme", "excluded", "failed_request"),
        ("r4", "acme", "acme", "excluded", "sandbox"),
        ("r4", "acme", "acme", "duplicate", "same_payload"),  # dedupe runs before exclusions
        ("r5", "internal-co", "internal-co", "excluded", "internal"),
        ("r6", "nobody", None, "rejected", "unknown_customer"),
        (None, None, None, "rejected", "malformed"),
        ("r8", "acme", "acme", "rejected", "bad_timestamp"),
        ("r9", "nobody", None, "rejected", "unknown_customer"),  # before ingest's bad_property
        ("u1", "acme", "acme", "unmetered", None),
        ("g2", "acme", "acme", "unmetered", None),  # filtered out: no meter counts it
        ("r10", "acme", "acme", "rejected", "too_far_in_future"),
        ("r10", "acme", "acme", "billable", None),  # a rejected copy does not claim the key
        ("r11", "acme", "acme", "billable", None),
        ("r2", "acme", "acme", "duplicate", "same_payload"),  # across files, first one wins
    ]


def test_bad_property_and_corrected_copy(built):
    rows = {(r[0], r[3], r[4]) for r in fates(built)[19:]}
    assert ("t6", "rejected", "bad_property") in rows
    assert ("t6", "billable", None) in rows  # the corrected copy of a rejected first one
    assert ("t8", "rejected", "bad_property") in rows  # a boolean is never numeric, even sandboxed
    assert {r[1] for r in rows if r[0].startswith(("a", "c", "s", "g", "p"))} == {"billable"}


def test_event_date_is_the_utc_day(built):
    rows = built.rows(
        "SELECT event_ts, event_date FROM marts.fct_event_fates WHERE event_id = 't5'"
    )
    assert str(rows[0][1]) == "2026-09-30"
    assert built.rows(
        "SELECT event_date FROM marts.fct_event_fates WHERE reason = 'bad_timestamp'"
    ) == [(None,)]


def test_count_and_sub_account_roll_up(built):
    assert quantities(built, "w_acme", "calls") == {None: (Decimal(5), 5)}


def test_group_by_one_row_per_tuple_missing_is_null(built):
    assert quantities(built, "w_acme", "calls_by_region") == {
        '{"region": "eu"}': (Decimal(2), 2),
        '{"region": "us"}': (Decimal(1), 1),
        '{"region": null}': (Decimal(2), 2),
    }


def test_sum_with_filter_group_and_unit_up(built):
    # large: 1510 + 500 (a sub-account, string value) + 0 = 2010 -> 2.01 -> 3; small 200 -> 1
    assert quantities(built, "w_acme", "tokens") == {
        '{"model": "large"}': (Decimal(3), 3),
        '{"model": "small"}': (Decimal(1), 1),
    }


@pytest.mark.parametrize(
    ("meter", "expected"),
    [("tokens_down", Decimal(3)), ("tokens_nearest", Decimal(4)), ("tokens_k", Decimal("3.5"))],
)
def test_unit_rounding(built, meter, expected):
    # 1510 + 500 + 200 + 1290 + 0 = 3500 tokens = 3.5 thousand
    assert quantity(built, "w_acme", meter) == expected


def test_count_unique_counts_distinct_text_values(built):
    # u-1, u-2, u-1 again, an event without agent_id, 7 -> {u-1, u-2, 7}
    assert quantities(built, "w_acme", "agents") == {None: (Decimal(3), 5)}


def test_max_min_latest(built):
    assert quantity(built, "w_acme", "peak") == Decimal("48.5")
    assert quantity(built, "w_acme", "low") == Decimal(7)  # the string "7"
    assert quantity(built, "w_acme", "last_conns") == Decimal(30)  # tie at 10-20: c9 > c3


def test_no_events_give_one_zero_row_per_meter(built):
    for meter in ("peak", "low", "last_conns", "seats", "agents", "calls", "tokens"):
        assert quantities(built, "w_beta", meter) == {None: (Decimal(0), 0)}, meter


def test_every_window_has_every_meter(built):
    meters = built.rows("SELECT count(*) FROM meterbook_catalog.meters")[0][0]
    rows = built.rows(
        "SELECT window_id, count(DISTINCT meter_code) FROM marts.fct_period_meter_quantities GROUP BY 1"
    )
    assert dict(rows) == {w[1]: meters for w in WINDOWS}


def test_filter_ops(built):
    got = {m: quantity(built, "w_beta", m) for m in ("f_eq", "f_ne", "f_in", "f_not_in")}
    assert got == {"f_eq": 1, "f_ne": 4, "f_in": 2, "f_not_in": 3}
    got = {m: quantity(built, "w_beta", m) for m in ("f_gt", "f_gte", "f_lt", "f_lte")}
    assert got == {"f_gt": 1, "f_gte": 2, "f_lt": 1, "f_lte": 2}


def test_arithmetic_expression(built):
    # 5400000 * 2 / 3600000 + 1800000 * 1 / 3600000
    assert quantity(built, "w_acme", "gpu_hours") == Decimal("3.5")


def test_time_weighted(built):
    # 10 seats (set in September) for 15 days, 20 from 10-16 for 16 days, over 31 days
    assert abs(quantity(built, "w_acme", "seats") - Decimal(470) / 31) < Decimal("1e-9")
    # September: nothing before 09-20 (0 seats), then 10 seats for 11 of 30 days
    assert abs(quantity(built, "w_acme_sep", "seats") - Decimal(110) / 30) < Decimal("1e-9")


def test_segments_are_aggregated_on_their_own(built):
    # seats by each segment's share of October (10 carried in for 15 days, 20 for 16): the
    # two segments add up to the whole month's level, not to 10 + 20 seat-months
    ((seats_a, events_a),) = quantities(built, "w_acme_a", "seats").values()
    ((seats_b, events_b),) = quantities(built, "w_acme_b", "seats").values()
    assert (events_a, events_b) == (0, 1)
    assert abs(seats_a - Decimal(150) / 31) < Decimal("1e-9")
    assert abs(seats_b - Decimal(320) / 31) < Decimal("1e-9")
    assert seats_a + seats_b == quantity(built, "w_acme", "seats")
    assert quantity(built, "w_acme_a", "last_conns") == Decimal("48.5")
    assert quantity(built, "w_acme_b", "last_conns") == Decimal(30)
    assert quantity(built, "w_acme_a", "calls") == 5
    assert quantity(built, "w_acme_b", "calls") == 0
    assert quantities(built, "w_acme_sep", "tokens") == {'{"model": "large"}': (Decimal(1), 1)}


def test_daily_usage(built):
    rows = built.rows(
        "SELECT usage_date::VARCHAR, meter_code, group_key::VARCHAR, event_count, daily_quantity "
        "FROM marts.fct_daily_meter_usage WHERE billing_customer_id = 'acme' "
        "AND meter_code IN ('tokens', 'last_conns', 'agents') ORDER BY ALL"
    )
    assert rows == [
        ("2026-09-30", "tokens", '{"model":"large"}', 1, Decimal(7)),
        ("2026-10-01", "agents", None, 1, Decimal(1)),
        ("2026-10-02", "agents", None, 1, Decimal(1)),
        ("2026-10-03", "tokens", '{"model":"large"}', 1, Decimal(1510)),
        ("2026-10-05", "last_conns", None, 1, Decimal(12)),
        ("2026-10-06", "last_conns", None, 1, Decimal("48.5")),
        ("2026-10-10", "tokens", '{"model":"small"}', 1, Decimal(200)),
        ("2026-10-12", "tokens", '{"model":"large"}', 1, Decimal(0)),
        ("2026-10-20", "agents", None, 1, Decimal(1)),
        ("2026-10-20", "last_conns", None, 2, Decimal(30)),
        ("2026-10-20", "tokens", '{"model":"large"}', 1, Decimal(500)),
        ("2026-10-21", "agents", None, 1, Decimal(0)),
        ("2026-10-22", "agents", None, 1, Decimal(1)),
        ("2026-11-01", "last_conns", None, 1, Decimal(99)),
    ]


def _snapshot(wh: Warehouse) -> dict:
    tables = (
        "marts.fct_event_fates",
        "marts.fct_daily_meter_usage",
        "marts.fct_period_meter_quantities",
        "intermediate.int_meter_quantities_windowed",
    )
    return {t: wh.rows(f"SELECT * FROM {t} ORDER BY ALL") for t in tables}


def test_rerunning_the_build_changes_nothing(built):
    before = _snapshot(built)
    built.dbt("build")
    assert _snapshot(built) == before


DAILY = "+fct_daily_meter_usage"
PERIOD = "+fct_period_meter_quantities"


def _small(folder, select: str) -> Warehouse:
    wh = Warehouse(folder)
    catalog = catalog_from_yaml(folder, CATALOG)
    wh.setup(catalog, [e for e in EVENTS if e["event_name"] == "api.request"], WINDOWS)
    wh.dbt("run", select)
    return wh


def _daily_calls(wh: Warehouse) -> dict:
    rows = wh.rows(
        "SELECT usage_date::VARCHAR, event_count FROM marts.fct_daily_meter_usage "
        "WHERE meter_code = 'calls'"
    )
    return dict(rows)


def test_a_daily_partition_is_replaced_and_only_it(tmp_path):
    wh = _small(tmp_path, DAILY)
    assert _daily_calls(wh) == {"2026-10-02": 2, "2026-10-03": 1, "2026-10-06": 2}
    with wh.connect() as con:  # a later ingest: a new event on 10-02, one on 10-06
        load_events(
            con,
            [
                ev("n1", "acme", "api.request", "2026-10-02T20:00:00Z"),
                ev("n2", "acme", "api.request", "2026-10-06T20:00:00Z"),
            ],
        )
    wh.dbt("run", DAILY, min_date="2026-10-02", max_date="2026-10-03")
    assert _daily_calls(wh) == {"2026-10-02": 3, "2026-10-03": 1, "2026-10-06": 2}
    wh.dbt("run", DAILY)
    assert _daily_calls(wh) == {"2026-10-02": 3, "2026-10-03": 1, "2026-10-06": 3}
    # a day that has no usage any more is emptied, not left as it was
    with wh.connect() as con:
        write_metering_tables(
            con,
            catalog_from_yaml(
                tmp_path / "v2",
                CATALOG.replace(
                    "  - {code: calls, event_name: api.request, aggregation: count}\n", ""
                ),
            ),
        )
    wh.dbt("run", DAILY, min_date="2026-10-01", max_date="2026-10-04")
    assert _daily_calls(wh) == {"2026-10-06": 3}


def test_close_month_var_replaces_only_that_month(tmp_path):
    wh = _small(tmp_path, PERIOD)
    wh.dbt("run", PERIOD, close_month="2026-09")
    months = wh.rows("SELECT DISTINCT close_month FROM intermediate.int_meter_quantities_windowed")
    assert months == [("2026-09",)]
    kept = wh.rows(
        "SELECT close_month, count(*) FROM marts.fct_period_meter_quantities GROUP BY 1 ORDER BY 1"
    )
    assert [m for m, _ in kept] == ["2026-09", "2026-10"]


def test_usage_runs_without_meter_windows(tmp_path):
    wh = Warehouse(tmp_path)
    wh.setup(catalog_from_yaml(tmp_path, CATALOG), EVENTS[:3])  # no close has run yet
    wh.dbt("build")
    assert wh.rows("SELECT count(*) FROM marts.fct_period_meter_quantities") == [(0,)]
    assert wh.rows("SELECT count(*) FROM marts.fct_event_fates") == [(3,)]


def test_a_failing_run_raises_with_dbts_message(tmp_path):
    wh = Warehouse(tmp_path)  # no raw tables, no catalog tables
    with pytest.raises(DbtRunError, match="raw_events"):
        wh.dbt("build")


def test_the_reconciliation_fails_on_a_read_seq_stored_twice(tmp_path, monkeypatch):
    # read_seq has no unique test of its own, on the raw events or on the fates: this
    # reconciliation is the proof (the fates repeat the repeated row, so their distinct
    # read_seq fall short of their rows)
    wh = Warehouse(tmp_path)
    wh.setup(catalog_from_yaml(tmp_path, CATALOG), EVENTS[:3])
    wh.dbt("build")
    with wh.connect() as con:
        con.execute(
            "INSERT INTO meterbook_raw.raw_events SELECT * FROM meterbook_raw.raw_events "
            "WHERE read_seq = (SELECT min(read_seq) FROM meterbook_raw.raw_events)"
        )
    # a build checks the events read since the last one: a row slipped in among the stored
    # ones is found by the full check (`meterbook verify`)
    wh.dbt("build")
    monkeypatch.setenv("METERBOOK_VERIFY_ALL", "1")
    with pytest.raises(DbtRunError, match="metering_fates_reconcile"):
        wh.dbt("build")


def test_each_build_checks_the_events_it_read(tmp_path):
    wh = Warehouse(tmp_path)
    wh.setup(catalog_from_yaml(tmp_path, CATALOG), EVENTS[:3])
    wh.dbt("build")
    with wh.connect() as con:
        # a new raw row whose read_seq repeats one read now: the next build must refuse
        con.execute(
            "INSERT INTO meterbook_raw.raw_events SELECT * REPLACE (read_seq + 100 AS read_seq) "
            "FROM meterbook_raw.raw_events WHERE read_seq = (SELECT max(read_seq) "
            "FROM meterbook_raw.raw_events)"
        )
        con.execute(
            "INSERT INTO meterbook_raw.raw_events SELECT * FROM meterbook_raw.raw_events "
            "WHERE read_seq = (SELECT max(read_seq) FROM meterbook_raw.raw_events)"
        )
    with pytest.raises(DbtRunError, match="metering_fates_reconcile"):
        wh.dbt("build")


def test_windows_keep_their_microseconds_when_events_are_bounded_before_the_join(tmp_path):
    # the windows' span is spliced into the SQL as literals (metering_window_bounds): a
    # literal cut to whole seconds would drop the event at 12:00:00 from [.., 12:00:00.000001)
    wh = Warehouse(tmp_path)
    at = "2026-10-05T{}Z"
    calls = [
        ev(f"b{i}", "acme", "api.request", at.format(t), {"region": "eu"})
        for i, t in enumerate(["10:00:00", "10:00:00.000001", "12:00:00", "12:00:00.000001"])
    ]
    window = ("2026-10", "w1", "acme", at.format("10:00:00.000001"), at.format("12:00:00.000001"))
    wh.setup(catalog_from_yaml(tmp_path, CATALOG), calls, [window])
    wh.dbt("run", PERIOD, close_month="2026-10")
    counted = wh.rows(
        "SELECT quantity, event_count FROM intermediate.int_meter_quantities_windowed "
        "WHERE meter_code = 'calls'"
    )
    assert counted == [(Decimal(2), 2)]


SHARED_EXPRESSIONS = """
meters:
  - {code: tokens_a, event_name: a, aggregation: sum, expression: tokens}
  - code: tokens_b_gold
    event_name: b
    aggregation: sum
    expression: tokens
    filters: [{property: tier, op: eq, value: gold}]
  - {code: cost_a, event_name: a, aggregation: max, expression: cost}
customers:
  - {id: acme}
"""


def test_meters_sharing_a_value_expression_reject_only_the_events_they_count(tmp_path):
    # the fates model checks meters of one expression together (tokens_a, tokens_b_gold):
    # an event is bad_property only when a meter that counts it has no value for it
    at = "2026-10-02T10:00:00Z"
    wh = Warehouse(tmp_path)
    wh.setup(
        catalog_from_yaml(tmp_path, SHARED_EXPRESSIONS),
        [
            ev("a_ok", "acme", "a", at, {"tokens": 5, "cost": 1}),
            ev("a_no_cost", "acme", "a", at, {"tokens": 5}),  # cost_a cannot value it
            ev("a_bad_tokens", "acme", "a", at, {"tokens": "x", "cost": 1}),
            ev("b_gold_bad", "acme", "b", at, {"tokens": "x", "tier": "gold"}),
            ev("b_silver_bad", "acme", "b", at, {"tokens": "x", "tier": "silver"}),  # unmetered
            ev("b_gold_no_cost", "acme", "b", at, {"tokens": 2, "tier": "gold"}),  # cost is a's
            ev("c_bad", "acme", "c", at, {"tokens": "x"}),  # no meter at all
        ],
    )
    wh.dbt("run", "+fct_event_fates")
    assert [(r[0], r[3], r[4]) for r in fates(wh)] == [
        ("a_ok", "billable", None),
        ("a_no_cost", "rejected", "bad_property"),
        ("a_bad_tokens", "rejected", "bad_property"),
        ("b_gold_bad", "rejected", "bad_property"),
        ("b_silver_bad", "unmetered", None),
        ("b_gold_no_cost", "billable", None),
        ("c_bad", "unmetered", None),
    ]
