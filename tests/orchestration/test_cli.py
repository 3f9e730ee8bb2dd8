"""The `meterbook` commands: argument errors, catalog errors and missing warehouses are one line."""

import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.cli import main
from orchestration.reports import format_months_summary, pick_samples

METERBOOK = Path(sys.executable).parent / "meterbook"


def test_bad_period_is_an_argument_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["close", "--period", "2026-13", "--home", str(tmp_path)])
    assert info.value.code == 2
    assert "month 13 is out of range" in capsys.readouterr().err


def test_validate_prints_every_error_and_exits_1(tmp_path, capsys):
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "a.yaml").write_text(
        "meters:\n  - {code: m, event_name: e, aggregation: sum}\n"
        "customers:\n  - {id: c, timezone: Nowhere/Land}\n"
    )
    assert main(["validate", "--home", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "catalog/a.yaml:2: meters[m]" in err
    assert "catalog/a.yaml:4: customers[c].timezone" in err
    assert "the catalog has 2 errors" in err


def test_close_with_a_bad_catalog_runs_nothing(tmp_path, capsys):
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "a.yaml").write_text("meters: [{code: m}]\n")
    assert main(["close", "--period", "2026-10", "--home", str(tmp_path)]) == 1
    assert "nothing was run" in capsys.readouterr().err
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_reports_before_any_run_say_what_to_do(tmp_path, capsys):
    assert main(["invoices", "--period", "2026-10", "--home", str(tmp_path)]) == 1
    assert "run `meterbook close`" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run([str(METERBOOK), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in (
        "demo",
        "validate",
        "ingest",
        "events",
        "close",
        "finalize",
        "invoices",
        "sync-stripe",
        "wallets",
        "revenue",
        "credit-note",
        "dunning",
        "ui",
    ):
        assert command in result.stdout


def _invoice(number: str, currency: str, total: str, status: str, *kinds: str) -> dict:
    return {
        "number": number,
        "currency": currency,
        "total": total,
        "status": status,
        "lines": [{"kind": kind} for kind in ("usage", *kinds)],
    }


def test_the_demo_summary_has_one_row_per_month_and_exact_totals():
    invoices = {
        "2026-10": [
            _invoice("A1", "USD", "0.10", "finalized"),
            _invoice("A2", "USD", "0.20", "void"),
            _invoice("A3", "JPY", "1500", "finalized"),
        ],
        "2026-11": [_invoice("", "USD", "1000.05", "draft")],
    }
    fates = dict.fromkeys(("billable", "unmetered", "excluded", "duplicate", "conflict"), 0)
    reports = {
        "2026-10": {"lines_read": 1234, "fates": {**fates, "billable": 1230, "rejected": 4}},
        "2026-11": {"lines_read": 0, "fates": {**fates, "rejected": 0}},
    }
    lines = format_months_summary(invoices, reports).splitlines()
    assert lines[1].split("  ")[0] == "2026-10" and "finalized 2, void 1" in lines[1]
    assert lines[1].endswith("JPY 1,500, USD 0.30")  # Decimal sums: no 0.30000000000000004
    assert lines[2].split() == ["2026-11", "1", "draft", "1", "USD", "1,000.05"]
    assert lines[5].split() == ["2026-10", "1,234", "1,230", "0", "0", "0", "0", "4"]


def test_the_sample_invoices_show_every_currency_and_kind_of_line_they_can():
    candidates = [
        _invoice("1", "USD", "1", "draft"),
        _invoice("2", "USD", "1", "draft"),
        _invoice("3", "USD", "1", "draft", "adjustment", "discount"),
        _invoice("4", "EUR", "1", "draft"),
        _invoice("5", "EUR", "1", "finalized", "fixed_fee"),
    ]
    picked = [i["number"] for i in pick_samples(candidates, 3)]
    assert picked == ["3", "5", "1"]  # most new at each step; ties: the first listed
    assert len(pick_samples(candidates[:2], 3)) == 2


def test_demo_passes_verbose_through(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(
        "orchestration.demo.run.run_demo", lambda ws, say, verbose: seen.append(verbose)
    )
    assert main(["demo", "--home", str(tmp_path)]) == 0
    assert main(["demo", "--verbose", "--home", str(tmp_path)]) == 0
    assert seen == [False, True]
