"""The `meterbook` commands: argument errors, catalog errors and missing warehouses are one line."""

import subprocess
import sys
from pathlib import Path

import pytest

from orchestration.cli import main

METERBOOK = Path(sys.executable).parent / "meterbook"


def test_bad_period_is_an_argument_error(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        main(["close", "--period", "2026-13", "--home", str(tmp_path)])
    assert info.value.code == 2
    assert "YYYY-MM" in capsys.readouterr().err


def test_validate_prints_every_error_and_exits_1(tmp_path, capsys):
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "a.yaml").write_text(
        "meters:\n  - {code: m, event_name: e, aggregation: sum}\n"
        "customers:\n  - {id: c, timezone: Nowhere/Land}\n"
    )
    assert main(["validate", "--home", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "catalog/a.yaml:2: meters[0]" in err
    assert "catalog/a.yaml:4: customers[0].timezone" in err
    assert "2 error(s)" in err


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
    ):
        assert command in result.stdout
