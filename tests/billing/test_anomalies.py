"""Anomalies of a close month (SPEC 10): moved invoices, charges that appeared or disappeared,
usage spikes; hand-checked on a warehouse seeded directly (finalized months through the real
finalization, draft months and daily usage as the marts hold them), then once through the
real close in Dagster."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from orchestration.billing.anomalies import Anomalies, find_anomalies
from orchestration.billing.finalize import finalize_period, void_invoice
from orchestration.catalog.models import Catalog
from orchestration.catalog.tables import write_catalog_tables
from orchestration.sql import connect
from orchestration.warehouse.models import relation

FIFTY = Decimal(50)
LATER = datetime(2027, 1, 10, tzinfo=UTC)  # every period of these tests is over
SUBSCRIPTIONS = ("a", "b", "c", "d", "e", "f", "q", "v", "w")
CATALOG = Catalog.model_validate(
    {
        "settings": {"invoice_prefix": "AN", "default_currency": "USD"},
        "meters": [
            {"code": "api_calls", "event_name": "api.request", "aggregation": "count"},
            {
                "code": "tokens",
                "event_name": "llm.completion",
                "aggregation": "sum",
                "expression": "tokens",
                "group_by": ["model"],
            },
            {
                "code": "seats",
                "event_name": "seats.changed",
                "aggregation": "time_weighted",
                "expression": "seats",
            },
        ],
        "plans": [
            {
                "code": "pro",
                "currency": "USD",
                "versions": [
                    {
                        "version": 1,
                        "effective_from": "2026-01-01",
                        "charges": [{"meter": "api_calls", "model": "per_unit", "unit_price": "1"}],
                    }
                ],
            }
        ],
        "customers": [{"id": f"cust_{s}", "currency": "USD"} for s in SUBSCRIPTIONS],
        "subscriptions": [
            {
                "id": f"sub_{s}",
                "customer_id": f"cust_{s}",
                "plan": "pro",
                "start_date": "2026-01-01",
            }
            for s in SUBSCRIPTIONS
        ],
    }
)


@pytest.fixture
def con(tmp_path):
    con = connect(tmp_path / "warehouse.duckdb")
    yield con
    con.close()


# --- invoices as SPEC 5 documents, stored the way a close and a finalization store them ----


def line(kind, amount, meter=None, fee_code=None, group=None, n=0):
    ident = f"{kind}-{meter}-{fee_code}-{json.dumps(group, sort_keys=True)}-{n}"
    return {
        "line_id": ident,
        "kind": kind,
        "meter": meter,
        "fee_code": fee_code,
        "group": group,
        "description": ident,
        "amount": amount,
    }


def calls(amount):
    return [line("usage", amount, meter="api_calls")]


def invoice(sub, month, lines):
    start = date.fromisoformat(f"{month}-01")
    end = (start + timedelta(days=32)).replace(day=1)
    total = format(sum((Decimal(x["amount"]) for x in lines), Decimal("0.00")), "f")
    discounts = -sum((Decimal(x["amount"]) for x in lines if x["kind"] == "discount"), Decimal(0))
    full = [
        {
            "period_start": start.isoformat(),
            "period_end": end.isoformat(),
            "quantity": None,
            "billable_quantity": None,
            "unit_price": None,
            "event_count": None,
            "tiers": None,
            **x,
            "line_id": f"{sub}-{month}-{x['line_id']}",
        }
        for x in lines
    ]
    return {
        "invoice_id": f"inv_{sub}_{month}",
        "number": None,
        "status": "draft",
        "customer_id": f"cust_{sub}",
        "subscription_id": f"sub_{sub}",
        "currency": "USD",
        "period_start": start.isoformat(),
        "period_end": end.isoformat(),
        "subtotal": total,
        "discount_total": format(discounts, ".2f"),
        "tax_total": "0.00",
        "total": total,
        "credits_applied": "0.00",
        "amount_due": total,
        "lines": full,
    }


def document(month, invoices: dict[str, list]):
    return {"period": month, "invoices": [invoice(s, month, ls) for s, ls in invoices.items()]}


def finalized(con, month, invoices):
    finalize_period(con, CATALOG, month, LATER, drafts=document(month, invoices))


def drafted(con, month, invoices):
    """The month's drafts in the marts `fct_invoices` and `fct_invoice_lines`, as rating
    leaves them (the columns the invoice document reads)."""
    heads, lines = relation("fct_invoices"), relation("fct_invoice_lines")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {heads.split('.')[0]}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {heads} (close_month VARCHAR, invoice_id VARCHAR, "
        "number VARCHAR, status VARCHAR, customer_id VARCHAR, subscription_id VARCHAR, "
        "currency VARCHAR, currency_exponent INTEGER, period_start DATE, period_end DATE, "
        "subtotal DECIMAL(38, 12), discount_total DECIMAL(38, 12), tax_total DECIMAL(38, 12), "
        "total DECIMAL(38, 12), credits_applied DECIMAL(38, 12), amount_due DECIMAL(38, 12))"
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {lines} (close_month VARCHAR, customer_id VARCHAR, "
        "invoice_id VARCHAR, line_no INTEGER, line_id VARCHAR, kind VARCHAR, meter VARCHAR, "
        "fee_code VARCHAR, group_key JSON, description VARCHAR, period_start DATE, "
        "period_end DATE, quantity DECIMAL(38, 12), billable_quantity DECIMAL(38, 12), "
        "unit_price DECIMAL(38, 12), amount DECIMAL(38, 12), event_count BIGINT, tiers JSON, "
        "credit_quantity DECIMAL(38, 12), credit_price DECIMAL(38, 12))"
    )
    for inv in document(month, invoices)["invoices"]:
        money = [inv[k] for k in ("subtotal", "discount_total", "tax_total", "total")]
        con.execute(
            f"INSERT INTO {heads} VALUES (?, ?, NULL, 'draft', ?, ?, 'USD', 2, ?, ?, ?, ?, ?, ?,"
            " 0, ?)",
            [month, inv["invoice_id"], inv["customer_id"], inv["subscription_id"],
             inv["period_start"], inv["period_end"], *money, inv["total"]],
        )  # fmt: skip
        for no, x in enumerate(inv["lines"], 1):
            group = None if x["group"] is None else json.dumps(x["group"])
            con.execute(
                f"INSERT INTO {lines} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL,"
                " NULL, ?, NULL, NULL, NULL, NULL)",
                [month, inv["customer_id"], inv["invoice_id"], no, x["line_id"], x["kind"],
                 x["meter"], x["fee_code"], group, x["description"], x["period_start"],
                 x["period_end"], x["amount"]],
            )  # fmt: skip


def moves(found: Anomalies):
    return [(m.subscription_id, m.previous_month, m.percent) for m in found.moved_invoices]


# --- moved invoices --------------------------------------------------------------------------


def test_a_total_moved_by_more_than_the_percentage_is_flagged(con):
    finalized(con, "2026-09", {
        "a": calls("100.00"), "b": calls("100.00"), "c": calls("100.00"), "d": calls("0.00"),
        "e": calls("0.00"), "w": calls("80.00"),
    })  # fmt: skip
    drafted(con, "2026-10", {
        "a": calls("150.00"),  # +50% exactly: not more than 50
        "b": calls("150.01"),  # +50.01%
        "c": calls("49.99"),  # -50.01%
        "d": calls("5.00"),  # from 0: a move, no percent
        "e": calls("0.00"),  # 0 to 0: no move
        "f": calls("999.00"),  # the first invoice: nothing to compare
        "w": calls("40.00"),  # -50% exactly
    })  # fmt: skip
    found = find_anomalies(con, "2026-10", FIFTY)
    assert moves(found) == [
        ("sub_b", "2026-09", Decimal("50.01")),
        ("sub_c", "2026-09", Decimal("-50.01")),
        ("sub_d", "2026-09", None),
    ]
    assert found.charges_changed == () and found.usage_spikes == ()
    assert found.counts() == {"moved_invoices": 3, "charges_changed": 0, "usage_spikes": 0}
    assert found.usage_from is None  # no daily usage in this warehouse: nothing to check
    # the percentage is the catalog's: at 50.01, a move of 50.01% is not more than it
    assert moves(find_anomalies(con, "2026-10", Decimal("50.01"))) == [("sub_d", "2026-09", None)]
    # a move of 1 in 10,000 at the smallest percentage the catalog takes
    assert moves(find_anomalies(con, "2026-10", Decimal("0.0001")))[0][0] == "sub_a"


def test_the_previous_invoice_is_the_latest_earlier_month_that_has_one(con):
    finalized(con, "2026-07", {"q": calls("30.00"), "b": calls("10.00")})
    finalized(con, "2026-08", {"b": calls("10.00")})
    drafted(con, "2026-09", {"b": calls("20.00")})  # still a draft: read from the marts
    drafted(con, "2026-10", {"q": calls("90.00"), "b": calls("20.00")})
    found = find_anomalies(con, "2026-10", FIFTY)
    # the quarterly q against July (+200%); b against September's draft, not August (+100%)
    assert moves(found) == [("sub_q", "2026-07", Decimal("200.00"))]
    # ...and October's draft against September's one is what made b move in September
    assert moves(find_anomalies(con, "2026-09", FIFTY)) == [("sub_b", "2026-08", Decimal(100))]


def test_void_invoices_take_no_part(con):
    finalized(con, "2026-08", {"v": calls("10.00"), "w": calls("10.00")})
    finalized(con, "2026-09", {"v": calls("100.00"), "w": calls("10.00")})
    void_invoice(con, "inv_v_2026-09", "billed twice", LATER)
    finalized(con, "2026-10", {"v": calls("30.00"), "w": calls("99.00")})
    void_invoice(con, "inv_w_2026-10", "wrong customer", LATER)
    found = find_anomalies(con, "2026-10", FIFTY)
    # v: September's invoice was voided, so October compares with August (+200%, not -70%);
    # w: October's only invoice is void, there is nothing to compare
    assert moves(found) == [("sub_v", "2026-08", Decimal(200))]
    assert moves(find_anomalies(con, "2026-09", FIFTY)) == []  # v's void September bills nothing


# --- charges -------------------------------------------------------------------------------


def test_charges_that_appeared_or_disappeared(con):
    large, small = {"model": "large", "region": "eu"}, {"model": "small"}
    finalized(con, "2026-09", {
        "a": [
            line("usage", "10.00", meter="tokens", group=large),
            line("fixed_fee", "49.00", fee_code="platform"),
            line("discount", "-2.00", fee_code="launch20"),
        ],
    })  # fmt: skip
    drafted(con, "2026-10", {
        "a": [
            # the same charge: group keys in another order, and cut into two segments
            line("usage", "6.00", meter="tokens", group={"region": "eu", "model": "large"}),
            line("usage", "4.50", meter="tokens", group=large, n=2),
            line("usage", "3.00", meter="tokens", group=small),  # appeared
            line("fixed_fee", "49.00", fee_code="platform"),
        ],  # the discount ran out: disappeared
    })  # fmt: skip
    found = find_anomalies(con, "2026-10", FIFTY)
    changed = [
        (c.change, c.kind, c.meter, c.fee_code, c.group, c.amount) for c in found.charges_changed
    ]
    assert changed == [
        ("appeared", "usage", "tokens", None, '{"model":"small"}', Decimal("3.00")),
        ("disappeared", "discount", None, "launch20", None, Decimal("-2.00")),
    ]
    assert found.moved_invoices == ()  # 57.00 -> 62.50
    assert found.lines() == [
        'charge appeared: cust_a / sub_a, usage tokens {"model":"small"}, USD 3.00 '
        "(not on the 2026-09 invoice)",
        "charge disappeared: cust_a / sub_a, discount launch20, USD -2.00 "
        "(was on the 2026-09 invoice)",
    ]


# --- usage spikes ----------------------------------------------------------------------------


def daily_usage(con, rows):
    """`fct_daily_meter_usage` rows: (day, customer, meter, group, events, quantity)."""
    write_catalog_tables(con, CATALOG)  # meterbook_catalog.meters: each meter's aggregation
    mart = relation("fct_daily_meter_usage")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {mart.split('.')[0]}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {mart} (usage_date DATE, billing_customer_id VARCHAR, "
        "meter_code VARCHAR, group_key JSON, event_count BIGINT, daily_quantity DECIMAL(38, 12))"
    )
    con.executemany(f"INSERT INTO {mart} VALUES (?, ?, ?, ?, ?, ?)", rows)


def days(first: str, count: int):
    start = date.fromisoformat(first)
    return [start + timedelta(days=i) for i in range(count)]


def spikes(found: Anomalies):
    return [
        (s.meter, str(s.day), s.usage, s.median, s.ratio, s.measure) for s in found.usage_spikes
    ]


def test_a_day_above_three_times_its_trailing_median_is_a_spike(con):
    rows = []
    for day in days("2026-09-01", 30):  # api_calls: 10 a day over two customers
        rows += [(day, "cust_a", "api_calls", None, 4, 4), (day, "cust_b", "api_calls", None, 6, 6)]
    rows += [
        (date(2026, 10, 1), "cust_a", "api_calls", None, 30, 30),  # 3x the median: no spike
        (date(2026, 10, 2), "cust_a", "api_calls", None, 20, 20),  # 31 over both: a spike
        (date(2026, 10, 2), "cust_b", "api_calls", None, 11, 11),
    ]
    for day in days("2026-10-03", 29):
        rows.append((day, "cust_a", "api_calls", None, 10, 10))
    # tokens: groups add up; only 3 of the 7 days before Oct 20 have usage: median 0
    for day in days("2026-10-15", 3):
        rows.append((day, "cust_a", "tokens", '{"model":"large"}', 1, Decimal("1.5")))
    rows += [
        (date(2026, 10, 20), "cust_a", "tokens", '{"model":"large"}', 1, 500),
        # 4 of the 7 days before Oct 28 have 4.5 (3 + 1.5): median 4.5; 13.5 is 3x, 13.51 more
        *((d, "cust_a", "tokens", '{"model":"small"}', 1, 3) for d in days("2026-10-21", 4)),
        *((d, "cust_b", "tokens", '{"model":"large"}', 1, "1.5") for d in days("2026-10-21", 4)),
        (date(2026, 10, 27), "cust_a", "tokens", '{"model":"small"}', 1, "13.5"),
        (date(2026, 10, 28), "cust_a", "tokens", '{"model":"small"}', 1, "13.51"),
    ]
    # seats (time_weighted): a level, so its events count: 2 a day from Oct 1, 7 on Oct 5
    # (the days before Oct 1 count 0: the median of [0, 0, 0, 2, 2, 2, 2] is 2) and Oct 15
    for day in days("2026-10-01", 31):
        rows.append((day, "cust_c", "seats", None, 7 if day.day in (5, 15) else 2, 500))
    rows.append((date(2026, 11, 1), "cust_a", "api_calls", None, 999, 999))  # November
    daily_usage(con, rows)
    found = find_anomalies(con, "2026-10", FIFTY)
    assert spikes(found) == [
        ("api_calls", "2026-10-02", Decimal(31), Decimal(10), Decimal("3.10"), "quantity"),
        ("seats", "2026-10-05", Decimal(7), Decimal(2), Decimal("3.50"), "events"),
        ("seats", "2026-10-15", Decimal(7), Decimal(2), Decimal("3.50"), "events"),
        ("tokens", "2026-10-28", Decimal("13.51"), Decimal("4.5"), Decimal("3.00"), "quantity"),
    ]
    assert found.usage_from == "fct_daily_meter_usage"
    assert found.lines()[0] == (
        "usage spike: api_calls on 2026-10-02, 31 (3.10x its trailing 7-day median of 10)"
    )
    assert found.lines()[1] == (
        "usage spike: seats on 2026-10-05, 7 events (3.50x its trailing 7-day median of 2)"
    )


def test_a_day_without_seven_days_of_data_before_it_is_not_checked(con):
    # the workspace's data starts on Oct 1: Oct 8 is the first day with 7 days before it
    rows = [(day, "cust_a", "api_calls", None, 1, 1) for day in days("2026-10-01", 31)]
    rows = [r for r in rows if r[0].day not in (7, 8)]
    rows += [(date(2026, 10, 7), "cust_a", "api_calls", None, 50, 50)]  # only 6 days before
    rows += [(date(2026, 10, 8), "cust_a", "api_calls", None, 50, 50)]  # 7 days: median 1
    daily_usage(con, rows)
    assert spikes(find_anomalies(con, "2026-10", FIFTY)) == [
        ("api_calls", "2026-10-08", Decimal(50), Decimal(1), Decimal("50.00"), "quantity")
    ]
    # once the workspace has usage from before (of any meter), Oct 7 is checked: Sep 30 had
    # no calls and counts as 0, the median of [0, 1, 1, 1, 1, 1, 1] is 1
    daily_usage(con, [(date(2026, 9, 1), "cust_b", "tokens", None, 1, 1)])
    assert [s[1] for s in spikes(find_anomalies(con, "2026-10", FIFTY))] == [
        "2026-10-07",
        "2026-10-08",
    ]


def test_without_the_daily_mart_the_metered_events_are_read(con):
    metered = relation("int_events_metered")
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {metered.split('.')[0]}")
    con.execute(
        f"CREATE TABLE {metered} (billing_customer_id VARCHAR, meter_code VARCHAR, "
        "aggregation VARCHAR, event_date DATE, event_ts TIMESTAMPTZ, group_key JSON, "
        "value DECIMAL(38, 12), text_value VARCHAR)"
    )
    rows = []
    for day in days("2026-10-01", 10):  # agents: 2 distinct a day (3 events)
        rows += [("cust_a", day, agent) for agent in ("x", "y", "y")]
    for agent in ("p", "q", "r", "s", "t", "u", "v", "v"):  # Oct 11: 7 distinct, 3.5x
        rows.append(("cust_b", date(2026, 10, 11), agent))
    con.executemany(
        f"INSERT INTO {metered} VALUES (?, 'agents', 'count_unique', ?, ?, NULL, NULL, ?)",
        [(c, d, datetime(d.year, d.month, d.day, 12, tzinfo=UTC), a) for c, d, a in rows],
    )
    found = find_anomalies(con, "2026-10", FIFTY)
    assert spikes(found) == [
        ("agents", "2026-10-11", Decimal(7), Decimal(2), Decimal("3.50"), "quantity")
    ]
    assert found.usage_from == "int_events_metered"


# --- what the close and `meterbook leakage` show ------------------------------------------


def test_lines_and_json_carry_every_anomaly_with_decimals_as_strings(con):
    finalized(con, "2026-09", {"b": calls("100.00"), "d": calls("0.00")})
    drafted(con, "2026-10", {"b": calls("150.01"), "d": calls("5.00")})
    found = find_anomalies(con, "2026-10", Decimal("50"))
    assert found.lines() == [
        "invoice moved +50.01%: cust_b / sub_b, USD 100.00 in 2026-09 -> 150.01",
        "invoice moved from zero: cust_d / sub_d, USD 0.00 in 2026-09 -> 5.00",
    ]
    data = found.to_json()
    assert data == json.loads(json.dumps(data))  # plain JSON
    assert data["period"] == "2026-10" and data["anomaly_pct"] == "50"
    assert data["counts"] == {"moved_invoices": 2, "charges_changed": 0, "usage_spikes": 0}
    assert data["moved_invoices"][0] == {
        "subscription_id": "sub_b",
        "customer_id": "cust_b",
        "currency": "USD",
        "previous_period": "2026-09",
        "previous_currency": "USD",
        "previous_total": "100.00",
        "total": "150.01",
        "percent": "50.01",
    }
    assert data["moved_invoices"][1]["percent"] is None
    assert find_anomalies(con, "2026-08", FIFTY).found == 0  # nothing before: nothing moved


# --- through the real close ------------------------------------------------------------------

CLOSE_CATALOG = """
settings: {invoice_prefix: AN, default_currency: USD, anomaly_pct: 50}
meters:
  - {code: api_calls, name: API calls, event_name: api.request, aggregation: count}
plans:
  - code: pro
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges: [{meter: api_calls, model: per_unit, unit_price: "0.10"}]
customers:
  - {id: acme, currency: USD}
subscriptions:
  - {id: sub_acme, customer_id: acme, plan: pro, start_date: 2026-10-01}
"""


@pytest.mark.slow
def test_the_close_counts_anomalies_and_its_check_warns_without_failing(tmp_path, monkeypatch):
    from dagster import AssetCheckSeverity, DagsterEventType, DagsterInstance

    from orchestration import pipeline
    from orchestration.workspace import Workspace

    ws = Workspace(tmp_path / "home").ensure()
    (ws.catalog_dir / "catalog.yaml").write_text(textwrap.dedent(CLOSE_CATALOG))
    events = []
    for day in range(1, 11):  # one call a day, ten on October 8: a spike
        for n in range(10 if day == 8 else 1):
            events.append(json.dumps({
                "event_id": f"e{day}-{n}", "customer_id": "acme", "event_name": "api.request",
                "timestamp": f"2026-10-{day:02d}T12:00:00Z", "properties": {},
            }))  # fmt: skip
    (ws.landing_dir / "2026-10.jsonl").write_text("\n".join(events) + "\n")
    monkeypatch.setenv("METERBOOK_NOW", "2026-11-10T00:00:00Z")
    for name in ("DAGSTER_HOME", "METERBOOK_HOME", "METERBOOK_WAREHOUSE"):
        monkeypatch.setenv(name, "")  # activate() exports them: undone after the test

    outcome = pipeline.close_period(ws, "2026-10")  # raises if the run or a blocking check fails

    assert outcome.success
    with DagsterInstance.get() as instance:
        records = instance.all_logs(outcome.run_id)
    materialized = [
        r.dagster_event.event_specific_data.materialization
        for r in records
        if r.dagster_event and r.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION
    ]
    (documents,) = [m for m in materialized if m.asset_key.path == ["invoice_documents"]]
    counts = {k: v.value for k, v in documents.metadata.items() if k.startswith("anomalies_")}
    assert counts == {
        "anomalies_moved_invoices": 0,
        "anomalies_charges_changed": 0,
        "anomalies_usage_spikes": 1,
    }
    spike = "usage spike: api_calls on 2026-10-08, 10 (10.00x its trailing 7-day median of 1)"
    assert spike in documents.metadata["anomalies"].value
    (check,) = [
        r.dagster_event.event_specific_data
        for r in records
        if r.dagster_event
        and r.dagster_event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
        and r.dagster_event.event_specific_data.check_name == "no_anomalies_to_review"
    ]
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert check.metadata["anomalies_usage_spikes"].value == 1
    assert spike in check.metadata["anomalies"].value
