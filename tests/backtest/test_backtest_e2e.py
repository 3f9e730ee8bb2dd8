"""`meterbook backtest` through the real commands and the `price_backtest` Dagster job (SPEC 10):
three closed months (two finalized, one draft) re-rated under a candidate catalog, hand-checked;
a changed meter re-meters; an edited catalog stops the backtest; nothing billed is touched."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
from meterbook_commands import meterbook as run_meterbook
from meterbook_commands import ok as run_ok

pytestmark = pytest.mark.slow

AFTER_OCTOBER = "2026-11-02T00:00:00Z"
MONTHS = ("2026-08", "2026-09", "2026-10")

# a and b since August, n from September. Per event: 100 input and 20 output tokens.
# Tokens bill input_tokens at 0.01, plus a 10.00 fee in arrears: a (10 events) 20.00,
# b (30 events) 40.00, n (25 events, tax 10%) 35.00 before tax.
CATALOG = """
settings: {invoice_prefix: BT, grace_days: 3, default_currency: USD}
meters:
  - {code: tokens, name: Tokens, event_name: llm.completion, aggregation: sum,
     expression: input_tokens}
plans:
  - code: starter
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        fixed_fees: [{code: platform, name: Platform, amount: "10.00", timing: in_arrears}]
        charges:
          - {meter: tokens, model: per_unit, unit_price: "0.01"}
customers:
  - {id: a, name: A Co, currency: USD, timezone: UTC}
  - {id: b, name: B Co, currency: USD, timezone: UTC}
  - {id: n, name: N Co, currency: USD, timezone: UTC, tax_rate: "0.10"}
subscriptions:
  - {id: sub_a, customer_id: a, plan: starter, start_date: 2026-08-01}
  - {id: sub_b, customer_id: b, plan: starter, start_date: 2026-08-01}
  - {id: sub_n, customer_id: n, plan: starter, start_date: 2026-09-01}
"""

# The candidate: from September the fee is 12.00 (a price changed) and tokens are graduated,
# 0.01 up to 2,000 and 0.005 beyond (a tier added); a and b keep version 1 (grandfathered).
VERSION_2 = """
      - version: 2
        effective_from: 2026-09-01
        fixed_fees: [{code: platform, name: Platform, amount: "12.00", timing: in_arrears}]
        charges:
          - meter: tokens
            model: graduated
            tiers: [{up_to: 2000, unit_price: "0.01"}, {up_to: null, unit_price: "0.005"}]
customers:"""

EVENTS = {"a": 10, "b": 30, "n": 25}


def _events(month: str) -> str:
    rows = []
    for customer, count in EVENTS.items():
        if customer == "n" and month == "2026-08":
            continue
        for i in range(count):
            rows.append(
                {
                    "event_id": f"{customer}-{month}-{i}",
                    "customer_id": customer,
                    "event_name": "llm.completion",
                    "timestamp": f"{month}-{i % 28 + 1:02d}T12:00:00Z",
                    "properties": {"input_tokens": 100, "output_tokens": 20},
                }
            )
    return "".join(json.dumps(row) + "\n" for row in rows)


def meterbook(home: Path, *args: str) -> subprocess.CompletedProcess:
    return run_meterbook(home, AFTER_OCTOBER, *args)


def ok(home: Path, *args: str) -> str:
    return run_ok(home, AFTER_OCTOBER, *args)


@pytest.fixture(scope="module")
def closed(tmp_path_factory) -> Path:
    """August and September finalized, October closed (drafts): built once per module."""
    home = tmp_path_factory.mktemp("closed") / "home"
    (home / "catalog").mkdir(parents=True)
    (home / "catalog" / "catalog.yaml").write_text(CATALOG)
    (home / "landing" / "events").mkdir(parents=True)
    for month in MONTHS:
        (home / "landing" / "events" / f"{month}.jsonl").write_text(_events(month))
    for month in MONTHS:
        ok(home, "close", "--period", month)
        if month != MONTHS[-1]:
            ok(home, "finalize", "--period", month)
    return home


@pytest.fixture
def home(closed, tmp_path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(closed, copy, ignore=shutil.ignore_patterns("dagster", "locks"))
    return copy


def candidate(tmp_path: Path, catalog: str) -> Path:
    folder = tmp_path / "candidate"
    folder.mkdir()
    (folder / "catalog.yaml").write_text(catalog)
    return folder


def tables(home: Path) -> dict[str, list]:
    """Every table of the warehouse with all its rows."""
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        names = con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() ORDER BY ALL"
        ).fetchall()
        return {
            f"{s}.{t}": con.execute(f'SELECT * FROM "{s}"."{t}" ORDER BY ALL').fetchall()
            for s, t in names
        }


def test_a_changed_price_a_new_tier_and_grandfathered_customers(home, tmp_path):
    pinned = CATALOG.replace(
        "start_date: 2026-08-01}", "start_date: 2026-08-01, pin_version: true}"
    )
    before = tables(home)
    results = json.loads(
        ok(
            home, "backtest", "--catalog", str(candidate(tmp_path, pinned.replace("customers:", VERSION_2, 1))),
            "--from", "2026-08", "--to", "2026-10", "--json",
        )
    )  # fmt: skip
    assert tables(home) == before  # drafts, ledger, wallets, Stripe tables: not one row changed
    assert (results["from"], results["to"]) == ("2026-08", "2026-10")
    got = {
        (i["period"], i["subscription_id"]): (i["baseline"], i["candidate"], i["difference"], i["percent"])
        for i in results["invoices"]
    }  # fmt: skip
    same = {"a": ("20.00", "20.00", "0.00", "0.00"), "b": ("40.00", "40.00", "0.00", "0.00")}
    # n from September on version 2: 12.00 + 2,000 x 0.01 + 500 x 0.005 = 34.50 (before tax)
    moved = ("35.00", "34.50", "-0.50", "-1.43")
    assert got == {
        **{(m, f"sub_{c}"): same[c] for m in MONTHS for c in "ab"},
        ("2026-09", "sub_n"): moved,
        ("2026-10", "sub_n"): moved,
    }
    assert results["currency_totals"] == {
        "USD": {"baseline": "250.00", "candidate": "249.00", "difference": "-1.00"}
    }
    n_lines = {
        (line["kind"], line["baseline"], line["candidate"])
        for line in results["lines"]
        if line["subscription_id"] == "sub_n" and line["period"] == "2026-10"
    }
    assert n_lines == {("fixed_fee", "10.00", "12.00"), ("usage", "25.00", "22.50")}
    assert {line["subscription_id"] for line in results["lines"]} == {"sub_n"}  # what changes
    folder = next((home / "backtests").glob("2*"))
    every_line = (folder / "lines.csv").read_text().splitlines()
    assert len(every_line) == 1 + 2 * 8  # header, fee and usage of each of the 8 invoices
    assert {p.name for p in folder.iterdir()} >= {"results.json", "invoices.csv", "report.html"}
    assert not list((home / "backtests" / "sandbox").glob("*.duckdb"))  # copies removed


def test_a_changed_meter_re_meters_the_stored_usage(home, tmp_path):
    both = CATALOG.replace("expression: input_tokens}", "expression: input_tokens + output_tokens}")
    ok(home, "backtest", "--catalog", str(candidate(tmp_path, both)), "--from", "2026-10",
       "--to", "2026-10", "--keep")  # fmt: skip
    kept = next((home / "backtests").glob("2*")) / "candidate.duckdb"
    assert not (home / "backtests" / "sandbox" / "warehouse.duckdb").exists()
    with duckdb.connect(str(kept), read_only=True) as con:
        quantities = dict(
            con.execute(
                "SELECT subscription_id, quantity FROM marts.fct_invoice_lines"
                " WHERE close_month = '2026-10' AND kind = 'usage'"
            ).fetchall()
        )
    # 120 tokens an event now: a 10 events, b 30, n 25
    assert quantities == {"sub_a": 1200, "sub_b": 3600, "sub_n": 3000}
    results = json.loads((next((home / "backtests").glob("2*")) / "results.json").read_text())
    october_b = next(
        i
        for i in results["invoices"]
        if i["period"] == "2026-10" and i["subscription_id"] == "sub_b"
    )
    assert (october_b["baseline"], october_b["candidate"]) == ("40.00", "46.00")


def test_a_catalog_edited_after_closing_stops_and_lists_the_invoices(home, tmp_path):
    (home / "catalog" / "catalog.yaml").write_text(CATALOG.replace('"0.01"', '"0.02"'))
    done = meterbook(
        home, "backtest", "--catalog", str(candidate(tmp_path, CATALOG)), "--from", "2026-09",
        "--to", "2026-10",
    )  # fmt: skip
    assert done.returncode == 1
    listed = [line for line in done.stderr.splitlines() if line.startswith("  2026-")]
    # every invoice of the two months: a, b and n each month, the finalized ones by number
    assert len(listed) == 6
    assert sum(" BT-2026-" in line for line in listed) == 3  # September's are finalized
    assert any(
        line.startswith("  2026-10 ") and "sub_b: subtotal billed 40.00, re-rated 70.00" in line
        for line in listed
    )
    assert "does not reproduce what was billed: 6 invoice(s)" in done.stderr
    assert not (home / "backtests" / "sandbox" / "warehouse.duckdb").exists()


def test_months_never_closed_and_a_bad_candidate_are_refused_before_any_run(home, tmp_path):
    done = meterbook(home, "backtest", "--catalog", str(candidate(tmp_path, CATALOG)),
                     "--from", "2026-10", "--to", "2026-11")  # fmt: skip
    assert done.returncode == 1
    assert "2026-11 was never closed" in done.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "catalog.yaml").write_text(CATALOG.replace('unit_price: "0.01"', 'unit_price: "x"'))
    done = meterbook(
        home, "backtest", "--catalog", str(bad), "--from", "2026-09", "--to", "2026-10"
    )
    assert done.returncode == 1
    assert "the candidate catalog: bad/catalog.yaml:14: plans[starter]" in done.stderr
    assert "nothing was run" in done.stderr
    assert not (home / "backtests").exists()  # no run, no folder
