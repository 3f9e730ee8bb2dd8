"""Shared by the end-to-end tests: workspaces, `meterbook` subprocesses, snapshots and kills.

Every close, finalize and report runs through the installed `meterbook` command in its own
process (its own session, so a kill can reach its children too). The test process only reads
the warehouse and the Dagster run storage, and only while no `meterbook` process uses them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestration.sql import connect

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO.parent / "shared" / "scenarios"
# bulk_a: three files in two formats (one gzipped), ~3,000 events, three invoices; big enough
# for the ingest to take a moment, small enough for a close in well under a minute
SCENARIO = SCENARIOS / "bulk_a"
PERIOD = "2026-10"
NOW = "2026-11-20T00:00:00Z"
METERBOOK = Path(sys.executable).parent / "meterbook"
RUN_TIMEOUT = 600  # seconds; a close takes ~40 s alone, longer with others on 2 cores

# What a close writes and a re-run must leave exactly as it was (ORDER BY ALL: full rows)
SNAPSHOT_TABLES = (
    "intermediate.int_wallet_draws",
    "marts.fct_invoices",
    "marts.fct_invoice_lines",
    "marts.fct_event_fates",
    "meterbook_raw.raw_events",
    "meterbook_raw.repeated_events",
    "meterbook_raw.landing_files",
    "meterbook_raw.landing_file_paths",
)
# (what the moment is, the Dagster step event that marks it: step key, event type, how many)
KILL_POINTS = (
    ("0.5 s after start", None),
    ("in the ingest", ("raw_events", "STEP_START", 1)),
)
# The last kill takes the close alone, as the OOM killer would, while its dbt child writes;
# a writer then arrives, and a second later the dbt child is killed too, mid-write.
ORPHAN_POINT = (
    "in the billing dbt build, dbt child left running",
    ("billing_models", "STEP_OUTPUT", 5),
)

LEDGER_TABLES = (
    "invoices",
    "invoice_lines",
    "invoice_numbers",
    "invoice_status_changes",
    "period_finalizations",
    "wallet_entries",
)
# Wallets for bulk_a's customers (SPEC 7), so that every kill, re-run and race below also
# proves the wallet ledger: a promotional grant expiring mid-month (paid by daily usage
# share), one granted to a sub-account (its parent's wallet) and a paid pack.
WALLETS_YAML = """
credit_grants:
  - {id: g_acme_trial, customer_id: acme, kind: promotional, amount: "5.00",
     granted_on: 2026-10-01, expires_on: 2026-10-20}
  - {id: g_acme_eu, customer_id: acme-eu, kind: promotional, amount: "3.00", granted_on: 2026-09-01}
  - {id: g_globex_pack, customer_id: globex, kind: paid, amount: "20.00", granted_on: 2026-10-01}
"""
WALLET_COLUMNS = (
    "close_month, seq, entry_id, entry_type, customer_id, grant_id, grant_kind, amount, "
    "entry_date, currency, invoice_id, line_id, charge_line_id, grant_source, subscription_id, "
    "granted_on, expires_on, priority, applies_to, rollover_max, grant_amount"
)


# --- workspaces ----------------------------------------------------------------------------


def new_workspace(home: Path, scenario: Path = SCENARIO) -> Path:
    """A fresh workspace laid out like the scenario runner does (scenarios/README.md)."""
    home.mkdir(parents=True)
    shutil.copytree(scenario / "catalog", home / "catalog")
    shutil.copytree(scenario / "events", home / "landing" / "events")
    if scenario == SCENARIO:
        (home / "catalog" / "wallets.yaml").write_text(WALLETS_YAML)
    return home


def copy_workspace(source: Path, home: Path) -> Path:
    """A copy of a workspace no process is using: warehouse, Dagster instance, documents."""
    shutil.copytree(source, home, symlinks=True)
    return home


# --- meterbook processes -------------------------------------------------------------------


@dataclass(frozen=True)
class Finished:
    name: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def last_error_line(self) -> str:
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def describe(self) -> str:
        return f"{self.name} exited {self.returncode}; stderr ends:\n{self.stderr[-3000:]}"


class Meterbook:
    """One `meterbook` command running in its own session, output kept in files."""

    def __init__(self, home: Path, *args: str, name: str | None = None, env: dict | None = None):
        self.home = home
        self.name = name or args[0]
        logs = home.parent / "outputs"
        logs.mkdir(exist_ok=True)
        stem = f"{home.name}-{self.name}-{time.monotonic_ns()}"
        self.out_path, self.err_path = logs / f"{stem}.out", logs / f"{stem}.err"
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.popen = subprocess.Popen(
                [str(METERBOOK), *args, "--home", str(home)],
                env=meterbook_env(home, env),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: dbt and log tailers included
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float = RUN_TIMEOUT) -> Finished:
        try:
            code = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.pid)
            self.popen.wait()
            raise AssertionError(f"{self.name} still running after {timeout}s") from None
        return Finished(self.name, code, self.out_path.read_text(), self.err_path.read_text())

    def kill(self, whole_group: bool = True) -> None:
        """SIGKILL: the process alone (its children live on) or its whole process group."""
        if whole_group:
            kill_group(self.pid)
        else:
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait()


def meterbook_env(home: Path, extra: dict | None = None) -> dict:
    env = dict(os.environ, METERBOOK_HOME=str(home), METERBOOK_NOW=NOW)
    env.pop("DAGSTER_HOME", None)  # every workspace has its own Dagster instance
    env.pop("METERBOOK_TEST_SLEEP_IN_FINALIZE", None)
    env.update(extra or {})
    return env


def run(home: Path, *args: str, env: dict | None = None) -> Finished:
    return Meterbook(home, *args, env=env).wait()


def run_ok(home: Path, *args: str, env: dict | None = None) -> Finished:
    done = run(home, *args, env=env)
    assert done.returncode == 0, done.describe()
    return done


def close(home: Path) -> Finished:
    return run_ok(home, "close", "--period", PERIOD)


def invoices_json(home: Path) -> str:
    """stdout of `meterbook invoices --json`, exactly as printed."""
    return run_ok(home, "invoices", "--period", PERIOD, "--json").stdout


def in_parallel(*jobs: Callable[[], Any]) -> list[Any]:
    """Run independent jobs (each driving its own workspace) at once; results in order."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
    return [f.result() for f in futures]


def assert_ok_or_clearly_busy(done: Finished, command: str, *also: str) -> None:
    """Exit 0, or exit non-zero with a one-line reason naming the busy workspace (SPEC 4), or
    one of the reasons `also` allows."""
    if done.returncode == 0:
        return
    line = done.last_error_line
    reasons = ("workspace is busy", *also)
    assert line.startswith(f"meterbook {command}: ") and any(r in line for r in reasons), (
        f"{done.name} failed without a one-line reason among {reasons}: {line!r}\n"
        + done.describe()
    )


# --- processes left behind -----------------------------------------------------------------


def group_members(pgid: int) -> list[tuple[int, str]]:
    """(pid, command line) of every process of the group that may still hold files (Linux).

    A killed multi-threaded process can show its main thread as a zombie while other threads
    still exit and still hold its locks, so a process counts until every thread is gone.
    """
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _in_group(entry, pgid) and _has_live_thread(entry):
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                members.append((int(entry.name), cmdline.strip()))
    return members


def _stat_fields(stat_path: Path) -> list[str]:
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return stat_path.read_text().rsplit(")", 1)[1].split()


def _in_group(proc: Path, pgid: int) -> bool:
    try:
        return int(_stat_fields(proc / "stat")[2]) == pgid
    except (OSError, IndexError, ValueError):
        return False


def _has_live_thread(proc: Path) -> bool:
    try:
        return any(_stat_fields(task / "stat")[0] not in "ZX" for task in (proc / "task").iterdir())
    except (OSError, IndexError):
        return False


def kill_group(pgid: int) -> None:
    """SIGKILL every process of the group, and wait until none can hold a file any more."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    wait_until(lambda: not group_members(pgid), 60, f"process group {pgid} to exit", poll=0.05)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- the Dagster run storage of a workspace ------------------------------------------------


def run_event_dbs(home: Path) -> set[Path]:
    """The per-run event logs of the workspace's Dagster instance (SqliteEventLogStorage)."""
    folder = home / "dagster" / "history" / "runs"
    return {p for p in folder.glob("*.db") if p.name != "index.db"} if folder.is_dir() else set()


def step_events(run_db: Path, step_key: str) -> dict[str, int]:
    """How many events of each type the step has logged so far (read-only, never blocks)."""
    try:
        con = sqlite3.connect(f"file:{run_db}?mode=ro", uri=True, timeout=0.5)
        try:
            rows = con.execute(
                "SELECT dagster_event_type, count(*) FROM event_logs WHERE step_key = ? GROUP BY 1",
                [step_key],
            ).fetchall()
        finally:
            con.close()
    except sqlite3.Error:  # not created yet, or mid-write: ask again on the next poll
        return {}
    return {str(kind): n for kind, n in rows}


def wait_for_step(
    proc: Meterbook, before: set[Path], step_key: str, event: str, count: int = 1
) -> None:
    """Block until the run `proc` started has logged `count` `event`s of `step_key`."""

    def reached() -> bool:
        if not proc.running():
            ended = proc.wait().describe()
            raise AssertionError(f"ended before {step_key} {event} x{count}: {ended}")
        new = run_event_dbs(proc.home) - before
        return any(step_events(db, step_key).get(event, 0) >= count for db in new)

    wait_until(reached, RUN_TIMEOUT, f"{step_key} {event} x{count}")


def run_statuses(home: Path) -> dict[str, str]:
    """Every run of the workspace's Dagster instance and its status (read-only)."""
    index = home / "dagster" / "history" / "runs.db"
    con = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=5)
    try:
        return dict(con.execute("SELECT run_id, status FROM runs").fetchall())
    finally:
        con.close()


# --- what a workspace holds ----------------------------------------------------------------


def table_rows(home: Path, tables: tuple[str, ...] = SNAPSHOT_TABLES) -> dict[str, list[tuple]]:
    """Every row of each table, in a total order (missing tables map to None)."""
    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        existing = {
            f"{s}.{t}"
            for s, t in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables()"
            ).fetchall()
        }
        return {
            name: con.execute(f"SELECT * FROM {name} ORDER BY ALL").fetchall()
            if name in existing
            else None
            for name in tables  # names are this module's constants, not input
        }
    finally:
        con.close()


def documents(home: Path) -> dict[str, bytes]:
    folder = home / "documents"
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*.html")}


def duplicated_mart_rows(home: Path) -> dict[str, list[tuple]]:
    """Keys that appear more than once in the marts Python reads (must all be empty)."""
    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        return {
            "fct_invoice_lines (close_month, line_id)": con.execute(
                "SELECT close_month, line_id, count(*) FROM marts.fct_invoice_lines "
                "GROUP BY ALL HAVING count(*) > 1"
            ).fetchall(),
            "fct_invoices (invoice_id)": con.execute(
                "SELECT invoice_id, count(*) FROM marts.fct_invoices "
                "GROUP BY ALL HAVING count(*) > 1"
            ).fetchall(),
            "fct_invoices (close_month, subscription_id, period_start)": con.execute(
                "SELECT close_month, subscription_id, period_start, count(*) "
                "FROM marts.fct_invoices GROUP BY ALL HAVING count(*) > 1"
            ).fetchall(),
            "raw_events (read_seq)": con.execute(
                "SELECT read_seq, count(*) FROM meterbook_raw.raw_events "
                "GROUP BY ALL HAVING count(*) > 1"
            ).fetchall(),
        }
    finally:
        con.close()


def ledger(home: Path) -> dict[str, Any]:
    """Row counts of every ledger table, and the numbers given, in sequence order."""
    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        present = {
            t
            for (t,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'meterbook_ledger'"
            ).fetchall()
        }
        counts = {
            t: con.execute(f"SELECT count(*) FROM meterbook_ledger.{t}").fetchone()[0]
            if t in present
            else 0
            for t in LEDGER_TABLES  # constants of this module
        }
        numbers = (
            con.execute(
                "SELECT number_prefix, number_year, number_seq, number, invoice_id "
                "FROM meterbook_ledger.invoice_numbers ORDER BY ALL"
            ).fetchall()
            if "invoice_numbers" in present
            else []
        )
        invoice_numbers = (
            dict(con.execute("SELECT invoice_id, number FROM meterbook_ledger.invoices").fetchall())
            if "invoices" in present
            else {}
        )
        wallet = (
            con.execute(
                f"SELECT {WALLET_COLUMNS} FROM meterbook_ledger.wallet_entries ORDER BY ALL"
            ).fetchall()
            if "wallet_entries" in present
            else []
        )
    finally:
        con.close()
    return {
        "counts": counts,
        "numbers": numbers,
        "invoice_numbers": invoice_numbers,
        "wallet_entries": wallet,
    }


def draft_wallet_entries(home: Path) -> list[tuple]:
    """The close's draft wallet entries, as finalization must make them permanent."""
    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        return con.execute(
            f"SELECT {WALLET_COLUMNS} FROM intermediate.int_wallet_draws"
            " WHERE record_type = 'entry' ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()


def assert_ledger_consistent(state: dict[str, Any], document: dict[str, Any]) -> None:
    """Gapless numbers 1..n per (prefix, year), one per ledger invoice, every line frozen once."""
    counts, numbers = state["counts"], state["numbers"]
    by_sequence: dict[tuple[str, int], list[int]] = {}
    for prefix, year, seq, number, _ in numbers:
        by_sequence.setdefault((prefix, year), []).append(seq)
        assert number == f"{prefix}-{year:04d}-{seq:06d}"
    for key, seqs in by_sequence.items():
        assert seqs == list(range(1, len(seqs) + 1)), f"gap or repeat in {key}: {seqs}"
    assert {invoice_id: number for *_, number, invoice_id in numbers} == state["invoice_numbers"]
    finalized = [inv for inv in document["invoices"] if inv["number"] is not None]
    assert counts["invoices"] == counts["invoice_numbers"] == len(finalized)
    assert counts["invoice_status_changes"] == len(finalized)  # one 'finalized' each, no void
    assert counts["invoice_lines"] == sum(len(inv["lines"]) for inv in finalized)
    assert {inv["invoice_id"]: inv["number"] for inv in finalized} == state["invoice_numbers"]


def finalized_document(draft_json: str, prefix: str) -> str:
    """What `invoices --json` prints once the drafts of `draft_json` are finalized.

    The rule (finalize.py): numbers PREFIX-YYYY-NNNNNN from 1, in the order customer,
    subscription, period start, invoice id; YYYY is the close month's year; the frozen
    document is the draft with its number and status set.
    """
    document = json.loads(draft_json)
    year = int(document["period"][:4])
    order = sorted(
        document["invoices"],
        key=lambda i: (i["customer_id"], i["subscription_id"], i["period_start"], i["invoice_id"]),
    )
    for seq, invoice in enumerate(order, start=1):
        invoice["number"] = f"{prefix}-{year:04d}-{seq:06d}"
        invoice["status"] = "finalized"
    return json.dumps(document, indent=2) + "\n"


def invoice_prefix(home: Path) -> str:
    from orchestration.catalog import load_catalog  # noqa: PLC0415

    return load_catalog(home / "catalog").settings.invoice_prefix


# --- the clean close every other outcome is compared with ----------------------------------


@dataclass(frozen=True)
class Closed:
    """A workspace after one clean close, and what it holds (the reference outcome)."""

    home: Path
    invoices_json: str
    rows: dict[str, list[tuple]]
    documents: dict[str, bytes]

    @classmethod
    def of(cls, home: Path) -> Closed:
        return cls(home, invoices_json(home), table_rows(home), documents(home))


def assert_same_as(reference: Closed, home: Path, invoices: str) -> None:
    """Byte-identical invoices JSON, identical marts/raw rows and documents."""
    assert invoices == reference.invoices_json
    rows = table_rows(home)
    for table, expected in reference.rows.items():
        assert rows[table] == expected, f"{table} differs from the clean close"
    assert documents(home) == reference.documents
