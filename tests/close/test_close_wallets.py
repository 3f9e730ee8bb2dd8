"""Prepaid credits across closes (SPEC 7), through the real commands: a month's draws start
from the earlier months' entries; finalizing freezes them as they are; an earlier month
closed again with other draws makes a later month's drafts stale until it is closed again."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from meterbook_commands import meterbook as run_meterbook
from meterbook_commands import ok as run_ok

pytestmark = pytest.mark.slow

NOW = "2026-12-20T00:00:00Z"
# Two months of 1,000 tokens (10.00 each). Grants: the plan's monthly 5.00 (rolls over at most
# 2.00) and a one-off 10.00 (`g_welcome`, written by the test so it can change it).
CATALOG = """
settings: {invoice_prefix: WT, grace_days: 3, default_currency: USD}
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
customers:
  - {id: c1, currency: USD, timezone: UTC, tax_rate: "0"}
subscriptions:
  - {id: sub_c1, customer_id: c1, plan: starter, start_date: 2026-09-01}
"""


def _grant(amount: str) -> str:
    return (
        "credit_grants:\n"
        f'  - {{id: g_welcome, customer_id: c1, kind: promotional, amount: "{amount}", '
        "granted_on: 2026-10-01}\n"
    )


def _events(month: str) -> str:
    return "".join(
        json.dumps(
            {
                "event_id": f"{month}-{day}",
                "customer_id": "c1",
                "event_name": "llm.completion",
                "timestamp": f"{month}-{day:02d}T12:00:00Z",
                "properties": {"tokens": 100},
            }
        )
        + "\n"
        for day in range(1, 11)
    )


def meterbook(home: Path, *args: str) -> subprocess.CompletedProcess:
    return run_meterbook(home, NOW, *args)


def ok(home: Path, *args: str) -> str:
    return run_ok(home, NOW, *args)


def promotional(home: Path, period: str) -> str:
    (invoice,) = json.loads(ok(home, "invoices", "--period", period, "--json"))["invoices"]
    return invoice["subtotal"]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("wallets") / "home"
    (home / "catalog").mkdir(parents=True)
    (home / "catalog" / "catalog.yaml").write_text(CATALOG)
    (home / "catalog" / "grants.yaml").write_text(_grant("10.00"))
    (home / "landing" / "events").mkdir(parents=True)
    for month in ("2026-10", "2026-11"):
        (home / "landing" / "events" / f"{month}.jsonl").write_text(_events(month))
    return home


def test_credits_carry_from_month_to_month_and_stale_drafts_are_refused(home):
    ok(home, "close", "--period", "2026-10")
    ok(home, "close", "--period", "2026-11")
    # October: usage 10.00; the monthly 5.00 first (it expires first), then 5.00 of the
    # 10.00 welcome grant -> subtotal 0.00; the monthly grant is used up: nothing rolls over.
    # November: the new monthly 5.00, then the welcome grant's last 5.00 -> 0.00.
    assert (promotional(home, "2026-10"), promotional(home, "2026-11")) == ("0.00", "0.00")

    # the welcome grant becomes 8.00 and October is closed again: October draws 5.00 + 5.00
    # still, but November's drafts were built on October's old draws
    (home / "catalog" / "grants.yaml").write_text(_grant("8.00"))
    ok(home, "close", "--period", "2026-10")
    refused = meterbook(home, "finalize", "--period", "2026-11")
    assert refused.returncode == 1
    assert "stale" in refused.stderr.strip().splitlines()[-1]

    ok(home, "close", "--period", "2026-11")  # November: 5.00 monthly + 3.00 left = 8.00
    assert promotional(home, "2026-11") == "2.00"
    ok(home, "finalize", "--period", "2026-10")
    ok(home, "finalize", "--period", "2026-11")  # October's entries, now permanent, are equal

    wallet = json.loads(ok(home, "wallets", "--json"))["customers"][0]
    assert wallet["balances"] == {"promotional": "0.00", "paid": "0.00"}
    frozen = [e for e in wallet["entries"] if not e["provisional"]]
    assert len(frozen) == len(wallet["entries"])  # both months finalized: all permanent
