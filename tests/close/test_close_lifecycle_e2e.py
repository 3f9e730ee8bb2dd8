"""The month-end lifecycle through the real pipeline (Dagster + dbt on DuckDB):
close -> finalize -> late events -> re-close -> adjustment on the next invoice, once.
Three Dagster closes: each costs about half a minute, so nothing more runs through Dagster.

"""

from __future__ import annotations

import json
import textwrap

import pytest

from orchestration import pipeline
from orchestration.billing.adjustments import write_adjustment_lines
from orchestration.billing.invoice_checks import check_invoices
from orchestration.billing.ledger import invoices_with_ledger
from orchestration.billing.lineage import line_events
from orchestration.billing.reconciliation import (
    check_events_in_one_line,
    check_ledger,
    check_meter_totals,
)
from orchestration.catalog import load_catalog
from orchestration.sql import connect
from orchestration.workspace import Workspace

pytestmark = pytest.mark.slow

CATALOG = """
settings: {invoice_prefix: MB, grace_days: 3, default_currency: USD}
meters:
  - {code: api_calls, name: API calls, event_name: api.request, aggregation: count}
  - {code: tokens, name: LLM tokens, event_name: llm.completion, aggregation: sum,
     expression: tokens, group_by: [model]}
plans:
  - code: pro
    name: Pro
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, name: Platform fee, amount: "10.00"}]
        charges:
          - {meter: api_calls, model: per_unit, unit_price: "0.10"}
          - meter: tokens
            model: graduated
            tiers: [{up_to: 1000, unit_price: "0.002"}, {up_to: null, unit_price: "0.001"}]
customers:
  - {id: acme, name: Acme, currency: USD, tax_rate: "0.20"}
  - {id: acme-lab, parent_id: acme}
  - {id: beta, name: Beta, currency: USD}
subscriptions:
  - {id: sub_acme, customer_id: acme, plan: pro, start_date: 2026-01-01}
  - {id: sub_beta, customer_id: beta, plan: pro, start_date: 2026-01-01}
"""


def event(event_id, customer, name, day, **properties):
    return json.dumps(
        {"event_id": event_id, "customer_id": customer, "event_name": name,
         "timestamp": f"{day}T12:00:00Z", "properties": properties}
    )  # fmt: skip


ON_TIME = [
    *(event(f"c{i}", "acme", "api.request", f"2026-10-{i + 1:02d}") for i in range(10)),
    event("t1", "acme", "llm.completion", "2026-10-05", tokens=900, model="large"),
    event("t2", "acme-lab", "llm.completion", "2026-10-06", tokens=600, model="large"),
    *(event(f"b{i}", "beta", "api.request", f"2026-10-{i + 10:02d}") for i in range(3)),
]
LATE = [  # dropped after October was finalized
    *(event(f"late{i}", "acme", "api.request", "2026-10-20") for i in range(4)),
    event("t3", "acme-lab", "llm.completion", "2026-10-21", tokens=600, model="large"),
    *(event(f"n{i}", "acme", "api.request", f"2026-11-{i + 2:02d}") for i in range(5)),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    home = tmp_path_factory.mktemp("lifecycle")
    ws = Workspace(home).ensure()
    (ws.catalog_dir / "catalog.yaml").write_text(textwrap.dedent(CATALOG))
    (ws.landing_dir / "2026-10.jsonl").write_text("\n".join(ON_TIME) + "\n")
    patch = pytest.MonkeyPatch()
    patch.setenv("METERBOOK_NOW", "2026-12-10T00:00:00Z")  # October and November are over
    yield ws
    patch.undo()


def read(ws: Workspace, fn, *args):
    con = connect(ws.warehouse_path)
    try:
        return fn(con, *args)
    finally:
        con.close()


def document(ws, period) -> str:
    return json.dumps(read(ws, invoices_with_ledger, period), indent=2)


def ledger_rows(con):
    names = ["invoices", "invoice_lines", "invoice_status_changes", "invoice_numbers"]
    return {
        n: con.execute(f"SELECT * FROM meterbook_ledger.{n} ORDER BY ALL").fetchall() for n in names
    }


def finalize(ws: Workspace, period: str) -> None:
    pipeline.finalize_period(ws, period)


def by_customer(doc_text: str) -> dict:
    return {inv["customer_id"]: inv for inv in json.loads(doc_text)["invoices"]}


def test_lifecycle(workspace):
    ws = workspace
    catalog = load_catalog(ws.catalog_dir)

    # 1. close October: drafts whose usage lines trace back to their events
    pipeline.close_period(ws, "2026-10")
    october = by_customer(document(ws, "2026-10"))
    assert {c: i["status"] for c, i in october.items()} == {"acme": "draft", "beta": "draft"}
    for check in (check_events_in_one_line, check_meter_totals):
        passed, meta = read(ws, check, "2026-10")
        assert passed, meta
    assert read(ws, check_invoices, catalog, "2026-10")[0]
    calls = next(line for line in october["acme"]["lines"] if line["meter"] == "api_calls")
    traced = read(ws, line_events, calls["line_id"])
    assert sorted(e["event_id"] for e in traced) == sorted(f"c{i}" for i in range(10))
    assert all(e["path"] == "2026-10.jsonl" for e in traced)

    # 2. finalize October; finalizing twice changes nothing
    finalize(ws, "2026-10")
    frozen_json = document(ws, "2026-10")
    frozen = by_customer(frozen_json)
    assert [frozen[c]["number"] for c in ("acme", "beta")] == ["MB-2026-000001", "MB-2026-000002"]
    assert {i["status"] for i in frozen.values()} == {"finalized"}
    ledger_before = read(ws, ledger_rows)
    finalize(ws, "2026-10")
    assert read(ws, ledger_rows) == ledger_before

    # 3. late October usage arrives; re-closing October changes no finalized byte
    (ws.landing_dir / "late.jsonl").write_text("\n".join(LATE) + "\n")
    pipeline.close_period(ws, "2026-10")
    assert read(ws, ledger_rows) == ledger_before
    assert document(ws, "2026-10") == frozen_json

    # 4. November carries the late October usage as adjustments, naming October
    pipeline.close_period(ws, "2026-11")
    first_json = document(ws, "2026-11")
    november = by_customer(first_json)
    adjustments = sorted(
        ((line["meter"], line["quantity"], line["amount"], line["period_start"], line["period_end"])
         for line in november["acme"]["lines"] if line["kind"] == "adjustment"),
        key=str,
    )  # fmt: skip
    assert adjustments == [
        ("api_calls", "4", "0.40", "2026-10-01", "2026-11-01"),
        # tokens large: 2100 now (1000 x 0.002 + 1100 x 0.001 = 3.10) vs 1500 billed (2.50)
        ("tokens", "600", "0.60", "2026-10-01", "2026-11-01"),
    ]
    calls = next(
        line
        for line in november["acme"]["lines"]
        if line["meter"] == "api_calls" and line["kind"] == "usage"
    )
    assert calls["quantity"] == "5"  # November's own usage only
    assert not [line for line in november["beta"]["lines"] if line["kind"] == "adjustment"]
    assert read(ws, check_invoices, catalog, "2026-11")[0]

    # 5. a re-close of the still-draft November would write the same rows again: no twice
    #    (re-running the Dagster close here would only add half a minute)
    again = read(ws, write_adjustment_lines, catalog, "2026-11")
    assert sorted((r["meter"], str(r["amount"])) for r in again.written) == [
        ("api_calls", "0.40"),
        ("tokens", "0.60"),
    ]

    # 6. once November is finalized, its adjustments are billed: the next close has none
    #    left to write (asked directly: a December close through Dagster adds only time);
    #    the numbers continue the 2026 sequence
    finalize(ws, "2026-11")
    november = by_customer(document(ws, "2026-11"))
    assert [november[c]["number"] for c in ("acme", "beta")] == ["MB-2026-000003", "MB-2026-000004"]
    december = read(ws, write_adjustment_lines, catalog, "2026-12")
    assert december.written == () and december.unbillable == ()
    passed, meta = read(ws, check_ledger)
    assert passed, meta
