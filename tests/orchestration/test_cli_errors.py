"""Issue 22: every command, given a bad argument, fails in one line on stderr, with no
traceback and a non-zero exit code.

Commands run in this process (`main`) under `capfd`, which captures the file descriptors:
whatever Dagster or dbt would write to stderr is caught too. The workspace has one October
finalized through `finalize_period` with the close tests' drafts, not through a Dagster
close: no case here needs more than a ledger and a catalog, and that takes a second.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from orchestration.billing.finalize import finalize_period
from orchestration.cli import main
from orchestration.ingest.fates_report import format_events_report
from orchestration.sql import connect

METERBOOK = Path(sys.executable).parent / "meterbook"
CLOSE_FIXTURES = Path(__file__).resolve().parents[1] / "close" / "close_fixtures.py"


def _close_fixtures():
    spec = importlib.util.spec_from_file_location("cli_errors_close_fixtures", CLOSE_FIXTURES)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _environment():
    """`main` points this process at its workspace (os.environ): undone after each test."""
    before = dict(os.environ)
    yield
    for key in set(os.environ) - set(before):
        del os.environ[key]
    os.environ.update(before)


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A workspace: the close tests' catalog, October's three invoices finalized."""
    fixtures = _close_fixtures()
    home = tmp_path_factory.mktemp("cli_errors")
    (home / "catalog").mkdir()
    data = {**fixtures.CATALOG, "customers": [*fixtures.CATALOG["customers"]]}
    data["customers"] += [
        {"id": "acme-lab", "parent_id": "acme"},
        {"id": "idle", "currency": "USD"},
    ]
    (home / "catalog" / "catalog.yaml").write_text(yaml.safe_dump(data))
    con = connect(home / "warehouse.duckdb")
    try:
        finalize_period(
            con, fixtures.catalog(), "2026-10", datetime(2026, 11, 5, tzinfo=UTC), fixtures.drafts()
        )
        ids = dict(
            con.execute("SELECT number, invoice_id FROM meterbook_ledger.invoices").fetchall()
        )
    finally:
        con.close()
    assert "MB-2026-000001" in ids
    return home


def one_error(capfd, argv: list[str], code: int = 1) -> str:
    """Runs `meterbook ARGV`; its one line on stderr, after checking the exit code."""
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse
        got = exc.code
    out, err = capfd.readouterr()
    lines = err.splitlines()
    assert "Traceback" not in err and "Traceback" not in out, err
    assert len(lines) == 1, err
    assert got == code, (got, err)
    assert lines[0].startswith("meterbook"), lines[0]
    return lines[0]


BAD_ARGUMENTS = [
    # argparse's own errors: one line, exit 2
    (["bogus"], 2, "invalid choice: 'bogus'"),
    ([], 2, "required: command"),
    (["close"], 2, "required: --period"),
    (["close", "--period", "2026-13"], 2, "month 13 is out of range"),
    (["close", "--period", "2026-00"], 2, "month 00 is out of range"),
    (["finalize", "--period", "October"], 2, "looks like YYYY-MM"),
    (["invoices", "--period", "2026-1"], 2, "looks like YYYY-MM"),
    (["events", "--period", "26-10"], 2, "looks like YYYY-MM"),
    (["sync-stripe", "--period", "2026/10"], 2, "looks like YYYY-MM"),
    (["void"], 2, "required: invoice_id, --reason"),
    (["void", "inv_x"], 2, "required: --reason"),
    (["invoices", "--json", "--bogus"], 2, "unrecognized arguments: --bogus"),
    (["ui", "--port", "http"], 2, "a port is a number from 1 to 65535"),
    (["ui", "--port", "70000"], 2, "a port is a number from 1 to 65535"),
    (["demo", "--period", "2026-10"], 2, "unrecognized arguments"),
    (["follow", "--interval", "0"], 2, "seconds from 0 to 86400, got '0'"),
    (["follow", "--interval", "soon"], 2, "seconds from 0 to 86400, got 'soon'"),
    (["follow", "--cycles", "0"], 2, "a whole number of 1 or more, got '0'"),
    (["api-key"], 2, "required: id"),
    (["credit-note"], 2, "required: invoice_id, --reason"),
    (["credit-note", "inv_x"], 2, "required: --reason"),
    # the command's own errors: one line, exit 1
    (["void", "MB-2026-000002", "--reason", "x"], 1, "is an invoice number; its id is inv_"),
    (["void", "inv_nope", "--reason", "x"], 1, "inv_nope is not finalized: no ledger invoice"),
    (["void", "MB-2026-000001", "--reason", " "], 1, "needs a reason"),
    (["invoices", "--period", "2026-10", "--customer", "nosuchco"], 1, "no customer 'nosuchco'"),
    (["invoices", "--period", "2026-10", "--customer", "acm"], 1, "did you mean acme?"),
    (["invoices", "--period", "2026-10", "--customer", "acme-lab"], 1, "sub-account of acme"),
    (["invoices", "--period", "2026-10", "--customer", "idle"], 1, "idle has no invoice for"),
    (["invoices", "--period", "2026-11"], 1, "2026-11 has no invoices"),
    (["invoices", "--period", "2026-11", "--json"], 1, "2026-11 has no invoices"),
    (["invoices"], 1, "needs --period"),
    (["invoices", "--line", "li_nope"], 1, "--line needs --events"),
    (["invoices", "--events"], 1, "--events needs --line"),
    (["finalize", "--period", "2026-12"], 1, "nothing to finalize: 2026-12 has no invoices"),
    (["events"], 1, "no event fates in this warehouse yet"),
    (["sync-stripe", "--period", "2026-10"], 1, "STRIPE_API_KEY is not set"),
    (["credit-note", "inv_nope", "--reason", "x"], 1, "invoice inv_nope is not finalized"),
    (
        ["credit-note", "MB-2026-000001", "--line", "li_x", "--reason", "x"],
        1,
        "each --line needs its --amount",
    ),
    (
        ["credit-note", "MB-2026-000001", "--line", "li_x", "--amount", "ten", "--reason", "x"],
        1,
        "--amount 'ten' of line li_x is not a number",
    ),
    (
        ["credit-note", "MB-2026-000001", "--line", "li_x", "--amount", "1", "--reason", "x"],
        1,
        "invoice MB-2026-000001 has no line li_x",
    ),
    (["credit-note", "MB-2026-000002", "--reason", " "], 1, "needs a reason"),
    (
        ["credit-note", "MB-2026-000001", "--reason", "x", "--refund"],
        1,
        "is not paid (Stripe: never pulled): nothing to refund",
    ),
    # refused before any run starts (no progress line): before the first subscription
    (["close", "--period", "2020-01"], 1, "2020-01 is outside this workspace's"),
]


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    BAD_ARGUMENTS,
    ids=[" ".join(a) or "(none)" for a, _, _ in BAD_ARGUMENTS],
)
def test_a_bad_argument_is_one_line(home, capfd, monkeypatch, argv, code, says):
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    line = one_error(capfd, [*argv, "--home", str(home)] if argv else argv, code)
    assert says in line, line


def test_a_month_with_invoices_for_others_names_the_customer(home, capfd):
    argv = ["invoices", "--period", "2026-10", "--customer", "acme-lab", "--home", str(home)]
    line = one_error(capfd, argv)
    assert "--customer acme" in line
    main(["invoices", "--period", "2026-10", "--customer", "beta", "--home", str(home)])
    assert "MB-2026-000002" in capfd.readouterr().out


def test_void_by_id_works_after_the_number_was_refused(home, capfd, tmp_path):
    # on a copy: the module's ledger stays as the other cases expect it
    copy = tmp_path / "home"
    copy.mkdir()
    (copy / "warehouse.duckdb").write_bytes((home / "warehouse.duckdb").read_bytes())
    line = one_error(capfd, ["void", "MB-2026-000003", "--reason", "x", "--home", str(copy)])
    invoice_id = line.rsplit(" ", 1)[-1]
    assert main(["void", invoice_id, "--reason", "disputed", "--home", str(copy)]) == 0
    assert f"voided {invoice_id}: disputed" in capfd.readouterr().err
    again = one_error(capfd, ["void", invoice_id, "--reason", "again", "--home", str(copy)])
    assert again.endswith(f"invoice {invoice_id} is already void")


@pytest.mark.parametrize(
    "argv",
    [
        ["validate"],
        ["ingest"],
        ["events"],
        ["close", "--period", "2026-10"],
        ["finalize", "--period", "2026-10"],
        ["invoices", "--period", "2026-10"],
        ["verify"],
        ["void", "inv_x", "--reason", "x"],
        ["sync-stripe", "--period", "2026-10"],
        ["credit-note", "inv_x", "--reason", "x"],
        ["ui"],
    ],
)
def test_a_missing_workspace_is_one_line_and_is_not_created(capfd, tmp_path, argv):
    missing = tmp_path / "typo"
    line = one_error(capfd, [*argv, "--home", str(missing)])
    assert f"no workspace at {missing}" in line
    assert not missing.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["events"],
        ["invoices", "--period", "2026-10"],
        ["verify"],
        ["void", "inv_x", "--reason", "x"],
        ["finalize", "--period", "2026-10"],
        ["credit-note", "inv_x", "--reason", "x"],
    ],
)
def test_a_workspace_without_a_warehouse_is_one_line(capfd, tmp_path, argv):
    (tmp_path / "catalog").mkdir()
    line = one_error(capfd, [*argv, "--home", str(tmp_path)])
    assert "no warehouse at" in line


def test_one_yaml_typo_is_one_line_naming_file_line_and_column(home, capfd, tmp_path):
    (tmp_path / "catalog").mkdir()
    text = (home / "catalog" / "catalog.yaml").read_text()
    broken = text.replace("- code: pro", "- code: [pro", 1)
    assert broken != text
    (tmp_path / "catalog" / "catalog.yaml").write_text(broken)
    for argv in (["validate"], ["close", "--period", "2026-10"], ["ingest"]):
        line = one_error(capfd, [*argv, "--home", str(tmp_path)])
        assert "catalog/catalog.yaml:" in line and "invalid YAML" in line, line
    assert not (tmp_path / "warehouse.duckdb").exists()


def test_several_catalog_errors_name_the_first_and_where_to_see_all(capfd, tmp_path):
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "a.yaml").write_text(
        "meters: [{code: m}]\ncustomers: [{id: c, timezone: Nowhere/Land}]\n"
    )
    line = one_error(capfd, ["close", "--period", "2026-10", "--home", str(tmp_path)])
    assert "the first: catalog/a.yaml:1: meters[m]" in line and "meterbook validate" in line


def test_the_demo_refuses_a_folder_that_is_not_its_own(capfd, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    line = one_error(capfd, ["demo", "--home", str(tmp_path)])
    assert "is not empty and is not a demo workspace" in line
    assert (tmp_path / "notes.txt").exists()


def test_an_unforeseen_error_is_one_line_and_its_traceback_is_logged(home, capfd, monkeypatch):
    def broken(*args):
        raise KeyError("a bug")

    monkeypatch.setattr("orchestration.cli.invoices_text", broken)
    line = one_error(capfd, ["invoices", "--period", "2026-10", "--home", str(home)])
    assert "unexpected KeyError" in line and "meterbook-errors.log" in line
    assert "Traceback" in (home / "logs" / "meterbook-errors.log").read_text()


def test_ui_calls_run_ui_with_the_workspace_host_and_port(home, monkeypatch):
    calls = []
    fake = type(sys)("orchestration.ui")
    fake.run_ui = lambda ws, host, port: calls.append((ws.home, host, port))
    monkeypatch.setitem(sys.modules, "orchestration.ui", fake)
    assert main(["ui", "--home", str(home)]) == 0
    assert main(["ui", "--host", "0.0.0.0", "--port", "3111", "--home", str(home)]) == 0
    assert calls == [(home, "127.0.0.1", 3000), (home, "0.0.0.0", 3111)]


def test_held_events_are_bounded_in_text_and_complete_in_json():
    held = [
        {"fate": "rejected", "reason": "malformed", "path": "a.jsonl", "line": n}
        for n in range(1, 1001)
    ]
    fates = dict.fromkeys(("billable", "unmetered", "excluded", "duplicate", "conflict"), 0)
    report = {
        "period": None,
        "lines_read": 1000,
        "fates": {**fates, "rejected": 1000},
        "reasons": {"rejected": {"malformed": 1000}},
        "files": [{"path": "a.jsonl", "lines_read": 1000, "fates": {**fates, "rejected": 1000}}],
        "held": held,
    }
    # events_report(held_limit=20) keeps the first 20; the heading counts them all
    lines = format_events_report({**report, "held": held[:20]}).splitlines()
    held_from = lines.index("Held for review (1000)") + 1
    assert [line.split()[-1] for line in lines[held_from:-1]] == [
        f"a.jsonl:{n}" for n in range(1, 21)
    ]
    assert lines[-1] == "  ... and 980 more: meterbook events --json"
    assert len(format_events_report(report).splitlines()) > 1000


def test_a_failed_dagster_run_is_one_line_after_its_progress_line(home, capfd, tmp_path):
    # the one case here that starts Dagster (about 6 s): its loggers and the step's stack
    # trace go to logs/, not to the terminal
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "catalog.yaml").write_bytes(
        (home / "catalog" / "catalog.yaml").read_bytes()
    )
    (tmp_path / "warehouse.duckdb").write_text("not a DuckDB file\n")
    assert main(["ingest", "--home", str(tmp_path)]) == 1
    out, err = capfd.readouterr()
    progress, error = err.splitlines()  # exactly two lines
    assert progress == "meterbook: running ingest_landing_files ..."
    assert error.startswith("meterbook ingest: ingest_landing_files failed: IO Error: ")
    assert "not a valid DuckDB database file" in error and "(Dagster run " in error
    assert "Traceback" not in err + out and not out


def test_the_console_script_fails_in_one_line_too(home):
    result = subprocess.run(
        [str(METERBOOK), "--home", str(home), "void", "MB-2026-000001", "--reason", "x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "MB-2026-000001 is an invoice number; its id is inv_" in result.stderr


def test_run_progress_reaches_the_terminal_while_the_run_log_does_not(capfd):
    import contextlib
    import io
    import logging

    from orchestration.cli import _show_run_progress

    _show_run_progress()
    log = io.StringIO()
    with contextlib.redirect_stderr(log):  # as run_job does for Dagster's own loggers
        logging.getLogger("meterbook.progress").info("printing 3 PDFs")
    assert capfd.readouterr().err == "meterbook: printing 3 PDFs\n"
    assert log.getvalue() == ""
