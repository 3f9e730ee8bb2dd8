"""Late usage of a finalized month re-rates only the subscriptions it touches (SPEC 2.4), and
that re-rate rebuilds the month's wallet models with only those invoices: every other wallet
would see its grants expire unused. Those entries must neither count nor be frozen, so the
next close's wallet check holds and a wallet that drew its credits keeps what it drew."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from meterbook_commands import ok as run_ok

pytestmark = pytest.mark.slow

NOW = "2027-01-10T00:00:00Z"
# c1's monthly 5.00: October uses 3.00 (300 tokens at 0.01), so 2.00 rolls over into
# November, which uses it all (1,000 tokens = 10.00: the 2.00 first, it expires first, then
# November's 5.00). c2 has no credits; a late event of c2's reopens November for c2 alone.
CATALOG = """
settings: {invoice_prefix: WR, grace_days: 3, default_currency: USD}
meters:
  - {code: tokens, name: Tokens, event_name: llm.completion, aggregation: sum, expression: tokens}
plans:
  - code: starter
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        credit_grants:
          - {code: monthly, kind: promotional, amount: "5.00", every: period, rollover: {max: "2.00"}}
        charges:
          - {meter: tokens, model: per_unit, unit_price: "0.01"}
  - code: plain
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        charges:
          - {meter: tokens, model: per_unit, unit_price: "0.01"}
customers:
  - {id: c1, currency: USD, timezone: UTC, tax_rate: "0"}
  - {id: c2, currency: USD, timezone: UTC, tax_rate: "0"}
subscriptions:
  - {id: sub_c1, customer_id: c1, plan: starter, start_date: 2026-10-01}
  - {id: sub_c2, customer_id: c2, plan: plain, start_date: 2026-10-01}
"""


def _event(event_id: str, customer: str, day: str, tokens: int) -> str:
    return json.dumps(
        {
            "event_id": event_id,
            "customer_id": customer,
            "event_name": "llm.completion",
            "timestamp": f"{day}T12:00:00Z",
            "properties": {"tokens": tokens},
        }
    )


def ok(home: Path, *args: str) -> str:
    return run_ok(home, NOW, *args)


def test_a_re_rate_of_a_finalized_month_leaves_other_wallets_alone(tmp_path):
    home = tmp_path / "home"
    (home / "catalog").mkdir(parents=True)
    (home / "catalog" / "catalog.yaml").write_text(CATALOG)
    landing = home / "landing" / "events"
    landing.mkdir(parents=True)
    usage = [("c1", "10", 300), ("c1", "11", 1000), ("c1", "12", 1000)]
    usage += [("c2", m, 1000) for m in ("10", "11", "12")]
    (landing / "usage.jsonl").write_text(
        "".join(_event(f"{c}-{m}", c, f"2026-{m}-05", n) + "\n" for c, m, n in usage)
    )
    for month in ("2026-10", "2026-11"):
        ok(home, "close", "--period", month)
        ok(home, "finalize", "--period", month)
    (landing / "late.jsonl").write_text(_event("c2-late", "c2", "2026-11-20", 100) + "\n")
    # December's close re-rates November for c2 alone (c1's November invoice is not rebuilt,
    # so that build sees c1's rollover unused), then draws c1's December credits and checks
    # every wallet: before the fix it failed, c1's rollover having expired after it was drawn
    ok(home, "close", "--period", "2026-12")
    ok(home, "finalize", "--period", "2026-12")

    wallet = json.loads(ok(home, "wallets", "--customer", "c1", "--json"))["customers"][0]
    november = sorted(
        (e["entry_type"], e["grant_id"].split(":", 1)[1], e["amount"])
        for e in wallet["entries"]
        if e["close_month"] == "2026-11"
    )
    # November: its 5.00 granted, the 2.00 rollover drawn, then 5.00 of November's grant
    # (10.00 of usage, 7.00 paid by credits): nothing left to roll over or expire
    assert november == [
        ("draw", "monthly:2026-10-01:rollover", "-2.00"),
        ("draw", "monthly:2026-11-01", "-5.00"),
        ("grant", "monthly:2026-11-01", "5.00"),
    ], november
    assert all(not e["provisional"] for e in wallet["entries"])
    assert wallet["balances"] == {"promotional": "0.00", "paid": "0.00"}
