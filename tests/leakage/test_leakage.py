"""Revenue leakage (`orchestration/billing/leakage.py`, the `revenue_leakage` asset): one
workspace whose events land in every section, ingested by the real `ingest_landing_files`
job (ingest, the catalog tables and the usage models: every event's fate), then reported for
October 2026. Every count below is counted by hand from EVENTS.

Catalog: pro v1 charges api_calls and tokens, pro v2 (from 2026-10-16) also gpu; basic
charges api_calls only.
- acme (UTC) on pro, unpinned, with the sub-account acme-lab;
- beta (America/New_York) on basic from 2026-10-10: local midnight is 04:00 UTC;
- delta on pro pinned at v1 (from 2026-09-01): gpu never charged;
- gamma has no subscription; intern (billable: false) has none either, and is not leakage.
"""

from __future__ import annotations

import json

import pytest
from dagster import materialize

from orchestration.billing.leakage import coverage, leakage_report, leakage_text, rfc3339
from orchestration.billing.month import BillingMonth
from orchestration.catalog import load_catalog
from orchestration.ingest.fates_report import events_report
from orchestration.pipeline import run_job
from orchestration.sql import connect
from orchestration.workspace import Workspace

pytestmark = pytest.mark.slow

PERIOD = "2026-10"
CATALOG = """
settings: {invoice_prefix: LK, grace_days: 3, default_currency: USD}
exclusions:
  - {reason: sandbox, property: env, op: eq, value: sandbox}
meters:
  - {code: api_calls, name: API calls, event_name: api.request, aggregation: count}
  - {code: tokens, name: Tokens, event_name: llm.completion, aggregation: sum, expression: tokens}
  - {code: gpu, name: GPU time, event_name: gpu.usage, aggregation: sum, expression: ms}
plans:
  - code: pro
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges:
          - {meter: api_calls, model: per_unit, unit_price: "0.10"}
          - {meter: tokens, model: per_unit, unit_price: "0.01"}
      - version: 2
        effective_from: 2026-10-16
        charges:
          - {meter: api_calls, model: per_unit, unit_price: "0.10"}
          - {meter: tokens, model: per_unit, unit_price: "0.01"}
          - {meter: gpu, model: per_unit, unit_price: "0.001"}
  - code: basic
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges:
          - {meter: api_calls, model: per_unit, unit_price: "0.20"}
customers:
  - {id: acme, currency: USD}
  - {id: acme-lab, parent_id: acme}
  - {id: beta, currency: USD, timezone: America/New_York}
  - {id: delta, currency: USD}
  - {id: gamma, currency: USD}
  - {id: intern, currency: USD, billable: false}
subscriptions:
  - {id: sub_acme, customer_id: acme, plan: pro, start_date: 2026-01-01}
  - {id: sub_beta, customer_id: beta, plan: basic, start_date: 2026-10-10}
  - {id: sub_delta, customer_id: delta, plan: pro, start_date: 2026-09-01, pin_version: true}
"""


def _event(event_id, customer, name, at, props=None) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "customer_id": customer,
            "event_name": name,
            "timestamp": at,
            "properties": props or {},
        }
    )


# in read order (one file): the first of a key is read before its conflict and duplicate
EVENTS = [
    # unmetered: acme 3, acme-lab 2 (billed to acme), gamma 1; one in September
    _event("u0", "acme", "page.view", "2026-09-30T23:59:59Z"),
    _event("u1", "acme", "page.view", "2026-10-02T10:00:00Z"),
    _event("u2", "acme", "page.view", "2026-10-05T10:00:00Z"),
    _event("u3", "acme", "page.view", "2026-10-20T10:00:00.250Z"),
    _event("u4", "acme-lab", "page.view", "2026-10-03T08:00:00Z"),
    _event("u5", "acme-lab", "page.view", "2026-10-04T08:00:00Z"),
    _event("u6", "gamma", "page.view", "2026-10-06T00:00:00Z"),
    # gpu under pro v1 (before 2026-10-16, UTC): acme 2 + acme-lab 1 uncharged; g4 is v2's
    _event("g1", "acme", "gpu.usage", "2026-10-03T00:00:00Z", {"ms": 1000}),
    _event("g2", "acme-lab", "gpu.usage", "2026-10-05T12:00:00Z", {"ms": 1000}),
    _event("g3", "acme", "gpu.usage", "2026-10-15T23:00:00Z", {"ms": 1000}),
    _event("g4", "acme", "gpu.usage", "2026-10-16T01:00:00Z", {"ms": 1000}),
    # tokens on basic: beta 2 uncharged (after its start)
    _event("t1", "beta", "llm.completion", "2026-10-12T12:00:00Z", {"tokens": 5}),
    _event("t2", "beta", "llm.completion", "2026-10-13T12:00:00Z", {"tokens": 7}),
    # delta pinned at v1: gpu uncharged all month; its calls are charged
    _event("d1", "delta", "gpu.usage", "2026-10-20T00:00:00Z", {"ms": 5}),
    _event("d2", "delta", "api.request", "2026-10-20T00:00:00Z"),
    # no subscription: beta before 2026-10-10 in New York (b3 is 22:00 on the 9th there),
    # gamma always; b4 is after beta's start; intern is not billable; x3 is November's
    _event("b1", "beta", "api.request", "2026-10-05T09:00:00Z"),
    _event("b2", "beta", "api.request", "2026-10-06T09:00:00Z"),
    _event("b3", "beta", "api.request", "2026-10-10T02:00:00Z"),
    _event("b4", "beta", "api.request", "2026-10-10T05:00:00Z"),
    _event("b5", "beta", "llm.completion", "2026-10-08T00:00:00Z", {"tokens": 3}),
    _event("x1", "gamma", "api.request", "2026-10-07T00:00:00Z"),
    _event("x2", "gamma", "api.request", "2026-10-21T00:00:00Z"),
    _event("x3", "gamma", "api.request", "2026-11-01T00:00:00Z"),
    _event("i1", "intern", "api.request", "2026-10-07T00:00:00Z"),
    # conflicts: acme's c1 (and a duplicate, not leakage), acme-lab's k1 on the 11th
    _event("c1", "acme", "api.request", "2026-10-04T00:00:00Z"),
    _event("c1", "acme", "api.request", "2026-10-04T00:00:00Z", {"region": "eu"}),
    _event("c1", "acme", "api.request", "2026-10-04T00:00:00Z"),
    _event("k1", "acme-lab", "llm.completion", "2026-10-09T00:00:00Z", {"tokens": 10}),
    _event("k1", "acme-lab", "llm.completion", "2026-10-11T00:00:00Z", {"tokens": 20}),
    # rejected: unknown_customer 2 (and one in November), bad_property 1 (tokens missing);
    # a malformed line and a timestamp without offset belong to no month
    _event("r1", "nobody", "api.request", "2026-10-07T00:00:00Z"),
    _event("r2", "nobody", "api.request", "2026-10-08T00:00:00Z"),
    _event("r3", "acme", "llm.completion", "2026-10-13T00:00:00Z"),
    _event("r4", "nobody", "api.request", "2026-11-02T00:00:00Z"),
    '{"event_id": "broken", ',
    _event("r5", "acme", "api.request", "2026-10-05T00:00:00"),
    # excluded (sandbox): not leakage
    _event("e1", "acme", "api.request", "2026-10-05T00:00:00Z", {"env": "sandbox"}),
]

ACME_V1 = [{"subscription_id": "sub_acme", "plan": "pro", "version": 1}]


def _seen(count: int, first: str, last: str) -> dict:
    return {"count": count, "first_seen": first, "last_seen": last}


EXPECTED = {
    "period": PERIOD,
    "totals": {
        "unmetered": 6,
        "uncharged_meters": 6,
        "no_subscription": 6,
        "conflicts": 2,
        "rejected": 3,
    },
    "unmetered": [
        {"customer_id": "acme", "billing_customer_id": "acme", "event_name": "page.view",
         **_seen(3, "2026-10-02T10:00:00Z", "2026-10-20T10:00:00.250Z")},
        {"customer_id": "acme-lab", "billing_customer_id": "acme", "event_name": "page.view",
         **_seen(2, "2026-10-03T08:00:00Z", "2026-10-04T08:00:00Z")},
        {"customer_id": "gamma", "billing_customer_id": "gamma", "event_name": "page.view",
         **_seen(1, "2026-10-06T00:00:00Z", "2026-10-06T00:00:00Z")},
    ],
    "uncharged_meters": [
        {"billing_customer_id": "acme", "subscriptions": ACME_V1, "meter": "gpu",
         "event_name": "gpu.usage", **_seen(3, "2026-10-03T00:00:00Z", "2026-10-15T23:00:00Z")},
        {"billing_customer_id": "beta",
         "subscriptions": [{"subscription_id": "sub_beta", "plan": "basic", "version": 1}],
         "meter": "tokens", "event_name": "llm.completion",
         **_seen(2, "2026-10-12T12:00:00Z", "2026-10-13T12:00:00Z")},
        {"billing_customer_id": "delta",
         "subscriptions": [{"subscription_id": "sub_delta", "plan": "pro", "version": 1}],
         "meter": "gpu", "event_name": "gpu.usage",
         **_seen(1, "2026-10-20T00:00:00Z", "2026-10-20T00:00:00Z")},
    ],
    "no_subscription": [
        {"billing_customer_id": "beta", "customer_id": "beta", "event_name": "api.request",
         **_seen(3, "2026-10-05T09:00:00Z", "2026-10-10T02:00:00Z")},
        {"billing_customer_id": "gamma", "customer_id": "gamma", "event_name": "api.request",
         **_seen(2, "2026-10-07T00:00:00Z", "2026-10-21T00:00:00Z")},
        {"billing_customer_id": "beta", "customer_id": "beta", "event_name": "llm.completion",
         **_seen(1, "2026-10-08T00:00:00Z", "2026-10-08T00:00:00Z")},
    ],
    "conflicts": [
        {"customer_id": "acme", "billing_customer_id": "acme", "event_name": "api.request",
         **_seen(1, "2026-10-04T00:00:00Z", "2026-10-04T00:00:00Z")},
        {"customer_id": "acme-lab", "billing_customer_id": "acme",
         "event_name": "llm.completion", **_seen(1, "2026-10-11T00:00:00Z", "2026-10-11T00:00:00Z")},
    ],
    "rejected": [
        {"reason": "unknown_customer", **_seen(2, "2026-10-07T00:00:00Z", "2026-10-08T00:00:00Z")},
        {"reason": "bad_property", **_seen(1, "2026-10-13T00:00:00Z", "2026-10-13T00:00:00Z")},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        # run_job points this process at the workspace: undone after this module
        for name in ("METERBOOK_HOME", "METERBOOK_WAREHOUSE", "DAGSTER_HOME"):
            env.setenv(name, "unset")
        env.delenv("DAGSTER_HOME")
        env.setenv("METERBOOK_NOW", "2026-11-10T00:00:00Z")
        ws = Workspace(tmp_path_factory.mktemp("leakage") / "home")
        ws.catalog_dir.mkdir(parents=True)
        (ws.catalog_dir / "catalog.yaml").write_text(CATALOG)
        ws.landing_dir.mkdir(parents=True)
        (ws.landing_dir / "events.jsonl").write_text("\n".join(EVENTS) + "\n")
        outcome = run_job(ws, "ingest_landing_files")
        assert outcome.success, outcome.error
        yield ws


@pytest.fixture(scope="module")
def report(workspace) -> dict:
    with connect(workspace.warehouse_path) as con:
        return leakage_report(con, load_catalog(workspace.catalog_dir), PERIOD)


def test_every_section_counts_what_was_counted_by_hand(report):
    assert report == EXPECTED


def test_report_agrees_with_the_events_report_and_is_json(workspace, report):
    with connect(workspace.warehouse_path) as con:
        events = events_report(con, PERIOD)
    assert report["totals"]["unmetered"] == events["fates"]["unmetered"]
    assert report["totals"]["conflicts"] == events["fates"]["conflict"]
    assert report["totals"]["rejected"] == events["fates"]["rejected"]
    assert json.loads(json.dumps(report)) == report


def test_other_months_and_catalog_spans(workspace):
    catalog = load_catalog(workspace.catalog_dir)
    with connect(workspace.warehouse_path) as con:
        november = leakage_report(con, catalog, "2026-11")
    # x3 (gamma, no subscription) and r4 (unknown customer) only
    assert november["totals"] == {
        "unmetered": 0, "uncharged_meters": 0, "no_subscription": 1, "conflicts": 0,
        "rejected": 1,
    }  # fmt: skip
    start, end = BillingMonth.parse(PERIOD).bounds("UTC")
    spans = {
        (s.subscription_id, s.version, rfc3339(s.start)) for s in coverage(catalog, start, end)
    }
    assert spans == {
        ("sub_acme", 1, "2026-01-01T00:00:00Z"),
        ("sub_acme", 2, "2026-10-16T00:00:00Z"),
        ("sub_beta", 1, "2026-10-10T04:00:00Z"),
        ("sub_delta", 1, "2026-09-01T00:00:00Z"),
    }


def test_text_has_a_table_per_section(report):
    text = leakage_text(report)
    assert text.splitlines()[0] == "Revenue leakage, events with a timestamp in 2026-10 (UTC)"
    assert "  acme       sub_acme (pro v1)             gpu     gpu.usage            3" in text
    for title in (
        "Unmetered events (no meter counts them): 6 events",
        "Metered usage the plan does not charge: 6 events",
        "Billable events with no active subscription: 6 events",
        "Conflicts held for review (same key, different payload): 2 events",
        "Rejected events: 3 events",
    ):
        assert title in text
    empty = {**report, "conflicts": [], "totals": {**report["totals"], "conflicts": 0}}
    assert "Conflicts held for review (same key, different payload): 0 events\n  none" in (
        leakage_text(empty)
    )


def test_the_asset_materializes_with_counts_per_section(workspace):
    from orchestration.definitions import build_definitions

    # the code location's own asset: the workspace's partitions and resources
    asset = build_definitions(workspace).resolve_assets_def("revenue_leakage")
    result = materialize([asset], partition_key=PERIOD)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("revenue_leakage")
    metadata = materialization.metadata
    counts = {k: v.value for k, v in metadata.items() if k.endswith("_events")}
    assert counts == {f"{name}_events": n for name, n in EXPECTED["totals"].items()}
    preview = metadata["largest"].value
    assert "| acme-lab (billed to acme) | page.view | 2 |" in preview
    assert "meter gpu (gpu.usage) on sub_acme (pro v1)" in preview
