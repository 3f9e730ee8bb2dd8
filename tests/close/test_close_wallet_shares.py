"""A grant valid for part of a period pays, through the real close, the share of each usage
line's own quantity on the days it was valid (SPEC 7): usage just outside the period (read
for time zones) and the other segment of a split period (SPEC 3.3) do not count."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from meterbook_commands import ok as run_ok

pytestmark = pytest.mark.slow

NOW = "2026-12-20T00:00:00Z"
# Both customers: 100 tokens a day Oct 1..20 at 0.01 = 20.00 in October.
# c_edge also has 500 tokens on Sep 30 and 500 on Nov 1 (other periods); its grant, valid
# Oct 1..Oct 16, pays 1,500 / 2,000 of the 20.00 line = 15.00 (not 1,500 / 3,000 = 10.00).
# c_split's price becomes 0.02 from Oct 11: segment 1 [Oct 1, Oct 11) 1,000 tokens = 10.00,
# segment 2 [Oct 11, Nov 1) 1,000 tokens = 20.00. Its grant from Oct 6 pays 500 / 1,000 of
# segment 1 = 5.00 (not 500 / 2,000 = 2.50) and all of segment 2 = 20.00: 25.00.
CATALOG = """
settings: {invoice_prefix: WS, grace_days: 3, default_currency: USD}
meters:
  - {code: tokens, name: Tokens, event_name: llm.completion, aggregation: sum, expression: tokens}
plans:
  - code: starter
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges:
          - {meter: tokens, model: per_unit, unit_price: "0.01"}
customers:
  - {id: c_edge, currency: USD, timezone: UTC, tax_rate: "0"}
  - {id: c_split, currency: USD, timezone: UTC, tax_rate: "0"}
subscriptions:
  - {id: sub_edge, customer_id: c_edge, plan: starter, start_date: 2026-09-01}
  - {id: sub_split, customer_id: c_split, plan: starter, start_date: 2026-09-01,
     price_overrides: [{meter: tokens, model: per_unit, unit_price: "0.02", effective_from: 2026-10-11}]}
credit_grants:
  - {id: g_edge, customer_id: c_edge, kind: promotional, amount: "50.00", granted_on: 2026-10-01, expires_on: 2026-10-16}
  - {id: g_split, customer_id: c_split, kind: promotional, amount: "100.00", granted_on: 2026-10-06}
"""


def _event(customer: str, day: str, tokens: int) -> str:
    return json.dumps(
        {
            "event_id": f"{customer}-{day}",
            "customer_id": customer,
            "event_name": "llm.completion",
            "timestamp": f"{day}T12:00:00Z",
            "properties": {"tokens": tokens},
        }
    )


def _events() -> str:
    october = [f"2026-10-{d:02d}" for d in range(1, 21)]
    rows = [_event(c, day, 100) for c in ("c_edge", "c_split") for day in october]
    rows += [_event("c_edge", "2026-09-30", 500), _event("c_edge", "2026-11-01", 500)]
    return "".join(row + "\n" for row in rows)


def test_partly_valid_grant_pays_the_lines_own_share(tmp_path: Path):
    home = tmp_path / "home"
    (home / "catalog").mkdir(parents=True)
    (home / "catalog" / "catalog.yaml").write_text(CATALOG)
    (home / "landing" / "events").mkdir(parents=True)
    (home / "landing" / "events" / "usage.jsonl").write_text(_events())
    run_ok(home, NOW, "close", "--period", "2026-10")
    invoices = json.loads(run_ok(home, NOW, "invoices", "--period", "2026-10", "--json"))
    lines = {
        i["customer_id"]: [(ln["kind"], ln["amount"]) for ln in i["lines"]]
        for i in invoices["invoices"]
    }
    assert lines == {
        "c_edge": [("usage", "20.00"), ("promotional_credit", "-15.00")],
        "c_split": [("usage", "10.00"), ("usage", "20.00"), ("promotional_credit", "-25.00")],
    }
