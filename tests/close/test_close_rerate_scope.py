"""Issue 21: late events re-rate only the subscriptions they bill to, not the whole month.

Two customers (one with a sub-account), API calls at 1.00 each. October is finalized; late
October calls arrive first for the sub-account, then for the other customer, each followed by
November's close. Each re-rate writes October's billing windows for the subscriptions its
late events bill to, and an earlier re-rate's difference stays billed.
"""

from __future__ import annotations

import json
import os
import textwrap
from decimal import Decimal

import pytest

from orchestration import cli
from orchestration.sql import connect
from orchestration.workspace import Workspace

pytestmark = pytest.mark.slow

CATALOG = """
settings: {invoice_prefix: RS, grace_days: 3, default_currency: USD}
meters:
  - {code: api_calls, name: API calls, event_name: api.request, aggregation: count}
plans:
  - code: calls
    name: Calls
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges: [{meter: api_calls, model: per_unit, unit_price: "1.00"}]
customers:
  - {id: acme, name: Acme, currency: USD}
  - {id: acme_eu, name: Acme EU, currency: USD, parent_id: acme}
  - {id: globex, name: Globex, currency: USD}
subscriptions:
  - {id: sub_acme, customer_id: acme, plan: calls, start_date: 2026-10-01}
  - {id: sub_globex, customer_id: globex, plan: calls, start_date: 2026-10-01}
"""


def calls(prefix: str, customer: str, count: int, month: str) -> str:
    return "".join(
        json.dumps(
            {"event_id": f"{prefix}{i}", "customer_id": customer, "event_name": "api.request",
             "timestamp": f"{month}-{i % 28 + 1:02d}T12:00:00Z"}
        ) + "\n"
        for i in range(count)
    )  # fmt: skip


@pytest.fixture
def ws(tmp_path, monkeypatch):
    saved = dict(os.environ)
    ws = Workspace(tmp_path / "ws").ensure()
    (ws.catalog_dir / "catalog.yaml").write_text(textwrap.dedent(CATALOG))
    monkeypatch.setenv("METERBOOK_NOW", "2026-12-10T00:00:00Z")  # November is over
    yield ws
    os.environ.clear()
    os.environ.update(saved)


def run(ws: Workspace, capsys, *argv: str) -> None:
    code = cli.main([*argv, "--home", str(ws.home)])
    assert code == 0, f"{' '.join(argv)} exited {code}: {capsys.readouterr().err}"


def query(ws: Workspace, sql: str) -> list[tuple]:
    con = connect(ws.warehouse_path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def rerated_october(ws: Workspace) -> list[str]:
    """The subscriptions October's billing windows were last written for."""
    rows = query(
        ws,
        "SELECT subscription_id FROM meterbook_billing.invoice_periods "
        "WHERE close_month = '2026-10' ORDER BY 1",
    )
    return [r[0] for r in rows]


def november_adjustments(ws: Workspace) -> list[tuple]:
    return query(
        ws,
        "SELECT subscription_id, quantity, amount FROM meterbook_billing.adjustment_lines "
        "WHERE close_month = '2026-11' ORDER BY 1",
    )


def test_late_events_rerate_only_the_subscriptions_they_bill_to(ws, capsys):
    (ws.landing_dir / "oct.jsonl").write_text(
        calls("a", "acme", 10, "2026-10") + calls("g", "globex", 20, "2026-10")
    )
    run(ws, capsys, "close", "--period", "2026-10")
    run(ws, capsys, "finalize", "--period", "2026-10")
    assert rerated_october(ws) == ["sub_acme", "sub_globex"]  # the close: every subscription

    # a sub-account's late calls bill to its parent's subscription
    (ws.landing_dir / "late-eu.jsonl").write_text(calls("eu", "acme_eu", 3, "2026-10"))
    run(ws, capsys, "close", "--period", "2026-11")
    assert rerated_october(ws) == ["sub_acme"]
    assert november_adjustments(ws) == [("sub_acme", 3, 3)]

    (ws.landing_dir / "late-g.jsonl").write_text(calls("lg", "globex", 4, "2026-10"))
    run(ws, capsys, "close", "--period", "2026-11")
    assert rerated_october(ws) == ["sub_globex"]
    # Acme's difference, found by the re-rate before, is still billed
    assert november_adjustments(ws) == [("sub_acme", 3, 3), ("sub_globex", 4, 4)]

    run(ws, capsys, "close", "--period", "2026-11")  # nothing new: nothing re-rated
    assert november_adjustments(ws) == [("sub_acme", 3, 3), ("sub_globex", 4, 4)]
    run(ws, capsys, "finalize", "--period", "2026-11")
    totals = query(
        ws,
        "SELECT close_month, sum(total) FROM meterbook_ledger.invoices GROUP BY 1 ORDER BY 1",
    )
    assert totals == [("2026-10", Decimal(30)), ("2026-11", Decimal(7))]
