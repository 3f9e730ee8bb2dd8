"""Revenue leakage (`meterbook leakage --period M`, the `revenue_leakage` asset): the month's
usage that bills nothing, in five sections, each row with a count and the first and last
event timestamps seen.

Scope: the events whose timestamp falls in month M (UTC), as `meterbook events --period`
counts them. Events without a valid timestamp (rejected as malformed, missing_field or
bad_timestamp) cannot be placed in a month, so no period's report holds them; `meterbook
events` without a period lists them. `first_seen` and `last_seen` are therefore always the
earliest and latest event timestamps of the row, never null.

Sections:
- `unmetered`: events of fate unmetered (valid, unique, no meter counts them), by the
  event's own customer and event name.
- `uncharged_meters`: billable events that count for a meter none of the subscriptions
  active at the event's instant charges in the plan version in force then, by billing
  customer (a sub-account bills to its parent), those subscriptions, meter and event name.
  Counted per event x meter (int_events_metered): an event two uncharged meters count is in
  both rows.
- `no_subscription`: billable events whose billing customer has no subscription active at the
  event's instant, by billing customer, the event's own customer and event name.
- `conflicts`: events held as conflicts (same key, different payload), by the event's own
  customer and event name.
- `rejected`: rejected events, by reason.

Who is covered when, from the catalog (the same rules as the close): a subscription is
active from local midnight of `start_date` to local midnight of `end_date` (exclusive) in its
customer's timezone; within that, the plan version in force on the event's local day prices it
(the one in force at `start_date` when `pin_version`), and its `charges` list the meters it
charges. Several subscriptions may cover one customer at once (on different meters): a meter
is charged when any of them charges it. Customers with `billable: false` get no invoice by
design, so their events are in neither `uncharged_meters` nor `no_subscription`. Usage in a
trial is charged (at 0 by design) and is not leakage either.

The JSON document (`leakage_report`; `leakage_text` prints it as tables):

    {"period": "2026-10",
     "totals": {"unmetered": 6, "uncharged_meters": 6, "no_subscription": 6,
                "conflicts": 2, "rejected": 3},
     "unmetered": [{"customer_id": "acme", "billing_customer_id": "acme",
                    "event_name": "page.view", "count": 3,
                    "first_seen": "2026-10-02T10:00:00Z", "last_seen": "2026-10-20T10:00:00Z"}],
     "uncharged_meters": [{"billing_customer_id": "acme",
                           "subscriptions": [{"subscription_id": "sub_acme", "plan": "pro",
                                              "version": 1}],
                           "meter": "gpu", "event_name": "gpu.usage", "count": 3,
                           "first_seen": "…", "last_seen": "…"}],
     "no_subscription": [{"billing_customer_id": "beta", "customer_id": "beta",
                          "event_name": "api.request", "count": 3,
                          "first_seen": "…", "last_seen": "…"}],
     "conflicts": [{"customer_id": "acme", "billing_customer_id": "acme",
                    "event_name": "api.request", "count": 1,
                    "first_seen": "…", "last_seen": "…"}],
     "rejected": [{"reason": "unknown_customer", "count": 2,
                   "first_seen": "…", "last_seen": "…"}]}

Each `totals` entry is the sum of its section's counts. Rows are ordered by count (largest
first), then by their keys. Timestamps are RFC 3339 in UTC (`Z`), with the fraction of a
second only when the event had one.

Reads the dbt models `fct_event_fates` (every event's fate) and `int_events_metered` (which
meters count each billable event), both as the usage models last built them, and the catalog
given (subscriptions, plan versions, charges, customers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import duckdb
import pyarrow as pa

from orchestration.billing.lineage import event_dates
from orchestration.billing.month import BillingMonth
from orchestration.billing.periods import local_midnight
from orchestration.billing.segments import version_for
from orchestration.catalog.models import Catalog
from orchestration.warehouse.models import model_exists, relation

SECTIONS = ("unmetered", "uncharged_meters", "no_subscription", "conflicts", "rejected")
TITLES = {
    "unmetered": "Unmetered events (no meter counts them)",
    "uncharged_meters": "Metered usage the plan does not charge",
    "no_subscription": "Billable events with no active subscription",
    "conflicts": "Conflicts held for review (same key, different payload)",
    "rejected": "Rejected events",
}
MODELS = ("fct_event_fates", "int_events_metered")


class NoUsageYet(LookupError):
    """The usage models have not run on this warehouse yet."""


@dataclass(frozen=True)
class Coverage:
    """One subscription under one plan version, over [start, end) (end None: open)."""

    billing_customer_id: str
    subscription_id: str
    plan: str
    version: int
    start: datetime
    end: datetime | None
    meters: tuple[str, ...]  # the meters the version charges


_COVERAGE_SCHEMA = pa.schema(
    [
        ("billing_customer_id", pa.string()),
        ("subscription_id", pa.string()),
        ("plan", pa.string()),
        ("version", pa.int32()),
        ("span_start", pa.timestamp("us", tz="UTC")),
        ("span_end", pa.timestamp("us", tz="UTC")),
        ("meters", pa.list_(pa.string())),
    ]
)


def coverage(catalog: Catalog, start: datetime, end: datetime) -> Iterator[Coverage]:
    """Every (subscription, version) span of a billable customer that overlaps [start, end):
    a subscription's active dates cut at the effective_from of each later version (unpinned
    only), each at local midnight in the customer's timezone (segments.py's rules)."""
    customers = {c.id: c for c in catalog.customers}
    plans = {p.code: p for p in catalog.plans}
    for sub in catalog.subscriptions:
        customer = customers[sub.customer_id]
        payer = customers[customer.parent_id] if customer.parent_id else customer
        if not payer.billable:
            continue
        plan = plans[sub.plan]
        cuts = {sub.start_date}
        if not sub.pin_version:
            cuts |= {
                v.effective_from
                for v in plan.versions
                if v.effective_from > sub.start_date
                and (sub.end_date is None or v.effective_from < sub.end_date)
            }
        starts = sorted(cuts)
        ends: list[date | None] = [*starts[1:], sub.end_date]
        for lo, hi in zip(starts, ends, strict=True):
            span_start = local_midnight(lo, customer.timezone)
            span_end = None if hi is None else local_midnight(hi, customer.timezone)
            if span_start >= end or (span_end is not None and span_end <= start):
                continue
            version = version_for(sub, plan, lo)
            yield Coverage(
                billing_customer_id=payer.id,
                subscription_id=sub.id,
                plan=plan.code,
                version=version.version,
                start=span_start,
                end=span_end,
                meters=tuple(sorted({c.meter for c in version.charges})),
            )


def _coverage_table(spans: list[Coverage]) -> pa.Table:
    rows = [
        {
            "billing_customer_id": s.billing_customer_id,
            "subscription_id": s.subscription_id,
            "plan": s.plan,
            "version": s.version,
            "span_start": s.start,
            "span_end": s.end,
            "meters": list(s.meters),
        }
        for s in spans
    ]
    return pa.Table.from_pylist(rows, schema=_COVERAGE_SCHEMA)


def _not_billable(catalog: Catalog) -> list[str]:
    return sorted(c.id for c in catalog.customers if not c.billable)


# --- one query per section -------------------------------------------------------------
# {fates} / {metered} are relations resolved from dbt's manifest; every value is a bound
# parameter: $1, $2 the month's instants [start, end), $3, $4 its UTC days (a bound on the
# fates, stored in read order, that skips other months' row groups), $5 the customers
# with billable: false. `leakage_spans` is the catalog's coverage (an Arrow table).

_IN_MONTH = "event_ts >= $1 AND event_ts < $2 AND event_date BETWEEN $3 AND $4"
_SEEN = "count(*) AS n, min(event_ts) AS first_seen, max(event_ts) AS last_seen"
_COVERS = (
    "s.billing_customer_id = e.billing_customer_id AND e.event_ts >= s.span_start"
    " AND (s.span_end IS NULL OR e.event_ts < s.span_end)"
)

_BY_CUSTOMER = f"""
SELECT customer_id, billing_customer_id, event_name, {_SEEN}
FROM {{fates}}
WHERE fate = '{{fate}}' AND {_IN_MONTH}
GROUP BY ALL
ORDER BY n DESC, customer_id, event_name
"""

_REJECTED = f"""
SELECT reason, {_SEEN}
FROM {{fates}}
WHERE fate = 'rejected' AND {_IN_MONTH}
GROUP BY ALL
ORDER BY n DESC, reason
"""

_NO_SUBSCRIPTION = f"""
SELECT e.billing_customer_id, e.customer_id, e.event_name, {_SEEN}
FROM {{fates}} AS e
WHERE e.fate = 'billable' AND {_IN_MONTH}
  AND NOT list_contains($5::VARCHAR[], e.billing_customer_id)
  AND NOT EXISTS (SELECT 1 FROM leakage_spans AS s WHERE {_COVERS})
GROUP BY ALL
ORDER BY n DESC, e.billing_customer_id, e.customer_id, e.event_name
"""

# each metered event with the subscriptions covering it: uncharged when none of them
# charges its meter (an event no subscription covers is no_subscription's). Only an event
# that some covering subscription does not charge can be uncharged: those candidates are
# found first by a join that streams, so the grouping per event (a list per event, which
# cannot spill: 10M events ran a 8 GB close out of memory) holds the candidates alone.
_UNCHARGED = f"""
WITH metered AS (
    SELECT read_seq, billing_customer_id, event_ts, meter_code
    FROM {{metered}}
    WHERE {_IN_MONTH} AND NOT list_contains($5::VARCHAR[], billing_customer_id)
),
candidates AS (
    SELECT DISTINCT e.read_seq, e.meter_code
    FROM metered AS e
    JOIN leakage_spans AS s ON {_COVERS}
    WHERE NOT list_contains(s.meters, e.meter_code)
),
covered AS (
    SELECT
        e.read_seq,
        e.meter_code,
        any_value(e.billing_customer_id) AS billing_customer_id,
        any_value(e.event_ts) AS event_ts,
        bool_or(list_contains(s.meters, e.meter_code)) AS charged,
        list(struct_pack(subscription_id := s.subscription_id, plan := s.plan,
                         version := s.version) ORDER BY s.subscription_id) AS subscriptions
    FROM metered AS e
    JOIN candidates AS c ON c.read_seq = e.read_seq AND c.meter_code = e.meter_code
    JOIN leakage_spans AS s ON {_COVERS}
    GROUP BY e.read_seq, e.meter_code
),
meters AS (
    SELECT meter_code, event_name FROM {{meters}}
)
SELECT c.billing_customer_id, c.subscriptions, c.meter_code, m.event_name,
       count(*) AS n, min(c.event_ts) AS first_seen, max(c.event_ts) AS last_seen
FROM covered AS c
LEFT JOIN meters AS m USING (meter_code)
WHERE NOT c.charged
GROUP BY ALL
ORDER BY n DESC, c.billing_customer_id, c.meter_code, c.subscriptions
"""


def leakage_report(con: duckdb.DuckDBPyConnection, catalog: Catalog, month: str) -> dict:
    """The month's leakage document (the module docstring has its shape). `month` is
    'YYYY-MM'; raises NoUsageYet before the usage models were ever built."""
    period = str(BillingMonth.parse(month))
    for model in MODELS:
        if not model_exists(con, model):
            raise NoUsageYet(
                f"no {model} in this warehouse yet: ingest the landing files first "
                "(`meterbook ingest`), which gives every event its fate"
            )
    start, end = BillingMonth.parse(period).bounds("UTC")
    first_day, last_day = event_dates(start, end)
    params = [start, end, first_day, last_day]
    fates = relation("fct_event_fates")
    spans = list(coverage(catalog, start, end))
    not_billable = _not_billable(catalog)

    sections: dict[str, list[dict]] = {
        "unmetered": _by_customer(con, fates, "unmetered", params),
        "uncharged_meters": _uncharged(con, params + [not_billable], spans),
        "no_subscription": _no_subscription(con, fates, params + [not_billable], spans),
        "conflicts": _by_customer(con, fates, "conflict", params),
        "rejected": [
            {"reason": reason, **_seen(n, first, last)}
            for reason, n, first, last in con.execute(
                _REJECTED.format(fates=fates), params
            ).fetchall()
        ],
    }
    return {
        "period": period,
        "totals": {name: sum(row["count"] for row in sections[name]) for name in SECTIONS},
        **sections,
    }


def _by_customer(con: duckdb.DuckDBPyConnection, fates: str, fate: str, params: list) -> list:
    # `fate` is one of two constants of this module, never input
    rows = con.execute(_BY_CUSTOMER.format(fates=fates, fate=fate), params).fetchall()
    return [
        {
            "customer_id": customer,
            "billing_customer_id": payer,
            "event_name": name,
            **_seen(n, first, last),
        }
        for customer, payer, name, n, first, last in rows
    ]


def _no_subscription(
    con: duckdb.DuckDBPyConnection, fates: str, params: list, spans: list[Coverage]
) -> list:
    rows = _with_spans(con, _NO_SUBSCRIPTION.format(fates=fates), params, spans)
    return [
        {
            "billing_customer_id": payer,
            "customer_id": customer,
            "event_name": name,
            **_seen(n, first, last),
        }
        for payer, customer, name, n, first, last in rows
    ]


def _uncharged(con: duckdb.DuckDBPyConnection, params: list, spans: list[Coverage]) -> list:
    sql = _UNCHARGED.format(
        metered=relation("int_events_metered"), meters=relation("stg_catalog__meters")
    )
    rows = _with_spans(con, sql, params, spans)
    return [
        {
            "billing_customer_id": payer,
            "subscriptions": [dict(s) for s in subscriptions],
            "meter": meter,
            "event_name": name,
            **_seen(n, first, last),
        }
        for payer, subscriptions, meter, name, n, first, last in rows
    ]


def _with_spans(
    con: duckdb.DuckDBPyConnection, sql: str, params: list, spans: list[Coverage]
) -> list[tuple]:
    # found by DuckDB's replacement scan under this local name, as orchestration.sql's
    # insert_values does: no register() (refused while a caller's result is still open)
    leakage_spans = _coverage_table(spans)  # noqa: F841
    return con.execute(sql, params).fetchall()


def _seen(count: int, first: datetime, last: datetime) -> dict[str, Any]:
    return {"count": count, "first_seen": rfc3339(first), "last_seen": rfc3339(last)}


def rfc3339(moment: datetime | None) -> str | None:
    """UTC with `Z`; the fraction of a second only when there is one (ms, else µs)."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    spec = (
        "seconds"
        if moment.microsecond == 0
        else "milliseconds"
        if moment.microsecond % 1000 == 0
        else "microseconds"
    )
    return moment.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


# --- text ----------------------------------------------------------------------------------

_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "unmetered": [("customer", "customer_id"), ("billed to", "billing_customer_id"),
                  ("event name", "event_name")],
    "uncharged_meters": [("billed to", "billing_customer_id"),
                         ("subscriptions (plan version)", "subscriptions"), ("meter", "meter"),
                         ("event name", "event_name")],
    "no_subscription": [("billed to", "billing_customer_id"), ("customer", "customer_id"),
                        ("event name", "event_name")],
    "conflicts": [("customer", "customer_id"), ("billed to", "billing_customer_id"),
                  ("event name", "event_name")],
    "rejected": [("reason", "reason")],
}  # fmt: skip
_SEEN_COLUMNS = [("events", "count"), ("first seen", "first_seen"), ("last seen", "last_seen")]


def _cell(key: str, value: Any) -> str:
    if key == "subscriptions":
        return ", ".join(f"{s['subscription_id']} ({s['plan']} v{s['version']})" for s in value)
    return "" if value is None else str(value)


def _table(section: str, rows: list[dict]) -> list[str]:
    columns = _COLUMNS[section] + _SEEN_COLUMNS
    cells = [[title for title, _ in columns]]
    cells += [[_cell(key, row[key]) for _, key in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    numeric = [key == "count" for _, key in columns]
    return [
        "  "
        + "  ".join(
            text.rjust(width) if right else text.ljust(width)
            for text, width, right in zip(line, widths, numeric, strict=True)
        ).rstrip()
        for line in cells
    ]


def leakage_text(report: dict) -> str:
    """The report for the terminal: the totals, then one table per section."""
    totals = report["totals"]
    width = max(len(TITLES[name]) for name in SECTIONS)
    lines = [f"Revenue leakage, events with a timestamp in {report['period']} (UTC)"]
    lines += [f"  {TITLES[name]:<{width}} {totals[name]:>10}" for name in SECTIONS]
    for name in SECTIONS:
        lines += ["", f"{TITLES[name]}: {totals[name]} events"]
        lines += _table(name, report[name]) if report[name] else ["  none"]
    lines += [
        "",
        "Events without a valid timestamp belong to no month: `meterbook events` lists them.",
    ]
    return "\n".join(lines)
