"""`meterbook wallets` (SPEC 7): the report built from wallet ledger rows, its text, and the
command end to end on the shared wallet_basic scenario."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from orchestration.billing.wallets.report import format_wallets, wallet_report
from orchestration.cli import main
from orchestration.sql import connect

REPO = Path(__file__).resolve().parents[2]
WALLET_BASIC = REPO.parent / "shared" / "scenarios-wave2" / "wallet_basic"
METERBOOK = Path(sys.executable).parent / "meterbook"
NOW = "2026-11-20T00:00:00Z"
OCT_END = date(2026, 11, 1)


def grant(gid, amount, kind="promotional", customer="acme", currency="USD", **attrs) -> dict:
    """A `grant` entry: the grant's attributes ride on it."""
    attrs = {
        "granted_on": date(2026, 10, 1),
        "expires_on": None,
        "priority": 10,
        "applies_to": "usage",
        "grant_source": "catalog",
    } | attrs
    row = entry("grant", gid, amount, kind, customer, currency, attrs["granted_on"])
    return row | attrs | {"grant_amount": Decimal(amount)}


def entry(
    entry_type,
    gid,
    amount,
    kind="promotional",
    customer="acme",
    currency="USD",
    day=OCT_END,
    invoice_id=None,
    close_month="2026-10",
    provisional=False,
) -> dict:
    return {
        "close_month": close_month,
        "entry_type": entry_type,
        "customer_id": customer,
        "grant_id": gid,
        "grant_kind": kind,
        "amount": Decimal(amount),
        "entry_date": day,
        "currency": currency,
        "invoice_id": invoice_id,
        "line_id": None,
        "provisional": provisional,
    }


def draw(gid, amount, invoice_id, kind="promotional", **kw) -> dict:
    return entry("draw", gid, f"-{amount}", kind, invoice_id=invoice_id, **kw)


def only(report: dict) -> dict:
    (wallet,) = report["customers"]
    return wallet


def by_id(wallet: dict) -> dict[str, dict]:
    return {g["id"]: g for g in wallet["grants"]}


def test_balances_and_statuses_follow_the_entries():
    entries = [
        grant("promo", "15.00"),
        grant("pack", "50.00", "paid", applies_to="all"),
        grant("old", "10.00", expires_on=date(2026, 10, 15)),
        grant("gone", "7.00"),
        grant("monthly", "100.00", expires_on=OCT_END, grant_source="plan"),
        draw("promo", "15.00", "inv_1"),
        draw("monthly", "92.00", "inv_1"),
        draw("pack", "18.00", "inv_1", "paid"),
        entry("expire", "old", "-10.00", day=date(2026, 10, 15)),
        entry("void", "gone", "-7.00"),
        entry("rollover", "monthly", "-5.00"),
        entry("expire", "monthly", "-3.00"),
        grant("monthly:rollover", "5.00", granted_on=OCT_END, grant_source="rollover"),
    ]
    wallet = only(wallet_report(entries))
    assert wallet["customer_id"] == "acme" and wallet["currency"] == "USD"
    assert wallet["balances"] == {"promotional": "5.00", "paid": "32.00"}
    grants = by_id(wallet)
    statuses = {gid: g["status"] for gid, g in grants.items()}
    assert statuses == {
        "promo": "used",
        "pack": "active",
        "old": "expired",
        "gone": "void",
        "monthly": "rolled_over",
        "monthly:rollover": "active",
    }
    assert grants["pack"] == {
        "id": "pack",
        "kind": "paid",
        "source": "catalog",
        "amount": "50.00",
        "granted_on": "2026-10-01",
        "expires_on": None,
        "applies_to": "all",
        "balance": "32.00",
        "status": "active",
    }
    assert grants["monthly"]["balance"] == "0.00"
    assert wallet["invoices"] == [
        {
            "invoice_id": "inv_1",
            "close_month": "2026-10",
            "promotional": "107.00",
            "paid": "18.00",
            "provisional": False,
        }
    ]


def test_grants_are_listed_in_drawing_order_promotional_first():
    entries = [
        grant("paid_first", "1.00", "paid", priority=1),
        grant("z_never", "1.00"),
        grant("b_late", "1.00", expires_on=date(2027, 3, 1)),
        grant("a_late", "1.00", expires_on=date(2027, 3, 1)),
        grant("early_granted", "1.00", expires_on=date(2027, 3, 1), granted_on=date(2026, 9, 1)),
        grant("soon", "1.00", expires_on=date(2027, 1, 1)),
        grant("urgent", "1.00", priority=5),
    ]
    order = [g["id"] for g in only(wallet_report(entries))["grants"]]
    # priority, then earliest expiry (never last), then granted_on, then id; paid after all
    assert order == ["urgent", "soon", "early_granted", "a_late", "b_late", "z_never", "paid_first"]


def test_expires_next_is_the_earliest_expiring_grant_with_a_balance():
    entries = [
        grant("spent", "5.00", expires_on=date(2026, 12, 1)),
        draw("spent", "5.00", "inv_1"),
        grant("later", "20.00", expires_on=date(2027, 6, 1)),
        grant("sooner", "30.00", "paid", expires_on=date(2027, 1, 1)),
        draw("sooner", "12.50", "inv_1", "paid"),
        grant("never", "99.00"),
    ]
    wallet = only(wallet_report(entries, today=date(2026, 11, 20)))
    assert wallet["expires_next"] == {
        "grant_id": "sooner",
        "amount": "17.50",
        "expires_on": "2027-01-01",
    }
    # once its day has passed a grant is expired even before a close records it
    lapsed = only(wallet_report(entries, today=date(2027, 2, 1)))
    assert by_id(lapsed)["sooner"]["status"] == "expired"
    assert lapsed["expires_next"]["grant_id"] == "later"
    assert only(wallet_report([grant("never", "1.00")]))["expires_next"] is None


def test_json_decimals_carry_the_currencys_minor_digits():
    entries = [
        grant("yen", "5000", customer="tokyo", currency="JPY"),
        draw("yen", "1234", "inv_jp", customer="tokyo", currency="JPY", provisional=True),
        grant("usd", "10", customer="acme"),
        draw("usd", "2.5", "inv_us", customer="acme"),
    ]
    document = json.loads(json.dumps(wallet_report(entries)))
    acme, tokyo = document["customers"]
    assert (acme["customer_id"], tokyo["customer_id"]) == ("acme", "tokyo")
    assert acme["balances"] == {"promotional": "7.50", "paid": "0.00"}
    assert tokyo["balances"] == {"promotional": "3766", "paid": "0"}
    assert tokyo["grants"][0]["amount"] == "5000"
    assert tokyo["invoices"] == [
        {
            "invoice_id": "inv_jp",
            "close_month": "2026-10",
            "promotional": "1234",
            "paid": "0",
            "provisional": True,
        }
    ]
    assert tokyo["entries"][1] == {
        "entry_type": "draw",
        "grant_id": "yen",
        "amount": "-1234",
        "entry_date": "2026-11-01",
        "invoice_id": "inv_jp",
        "line_id": None,
        "close_month": "2026-10",
        "provisional": True,
    }
    assert [e["amount"] for e in acme["entries"]] == ["10.00", "-2.50"]


def test_the_text_has_balances_grants_draws_and_what_expires_next():
    entries = [
        grant("promo", "15.00", expires_on=date(2027, 1, 1)),
        draw("promo", "5.00", "inv_1", provisional=True),
    ]
    text = format_wallets(wallet_report(entries))
    assert text.splitlines()[0] == "acme (USD): promotional 10.00, paid 0.00"
    assert "promo" in text and "2027-01-01" in text and "active" in text
    assert "Drawn by invoices:" in text and "inv_1" in text and "draft" in text
    assert text.splitlines()[-1] == "  Expires next: 10.00 of promo on 2027-01-01"


@pytest.fixture
def _environment():
    """`main` points this process at its workspace (os.environ): undone after the test."""
    before = dict(os.environ)
    yield
    for key in set(os.environ) - set(before):
        del os.environ[key]
    os.environ.update(before)


@pytest.mark.usefixtures("_environment")
def test_a_warehouse_without_wallet_entries_says_so_in_one_line(tmp_path, capsys):
    (tmp_path / "catalog").mkdir()
    connect(tmp_path / "warehouse.duckdb").close()
    assert main(["wallets", "--home", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out == "no wallet entries yet: credit grants appear after the first close\n"
    assert main(["wallets", "--json", "--home", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == {"customers": []}


def run(args: list[str], home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, METERBOOK_HOME=str(home), METERBOOK_NOW=NOW)
    env.pop("DAGSTER_HOME", None)  # the workspace's own instance
    command = (
        [str(METERBOOK)] if METERBOOK.exists() else [sys.executable, "-m", "orchestration.cli"]
    )
    return subprocess.run(
        [*command, *args, "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


# After a real close: tests/scenarios/test_scenarios.py, test_wallets_after_the_wallet_basic_close
# (on the workspace the wallet_basic scenario closed: no close of its own).
