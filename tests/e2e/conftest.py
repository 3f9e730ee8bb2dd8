"""The expensive part of the end-to-end tests: real `meterbook` runs, recorded once per session.

A close costs ~40 s and mostly keeps one core busy, so each flow below drives its own
workspace, all flows run at the same time (threads waiting on subprocesses), and the tests only
assert on what the flows recorded. A flow that starts from the closed reference waits for it.

- `concurrent_closes`: two closes launched together on one fresh workspace while a third,
  clean close runs alone on another fresh copy of the same inputs: that one is `reference`;
- `rerun`: a copy of the closed reference, closed again;
- `race`: a copy of the closed reference, closed and finalized at the same moment;
- `killed_finalize`: a copy of the closed reference, finalized, SIGKILLed inside the finalize
  transaction, finalized again;
- `killed_closes`: a fresh workspace whose closes are SIGKILLed at later and later moments
  (e2e_helpers.KILL_POINTS), then closed to the end;
- `ui`: a copy of the closed reference, seen in the Dagster UI (the CLI's close on the job's
  page and in the partitions, read by headless Chromium) and closed again from `dagster dev`
  through GraphQL (e2e_ui.py, e2e_browser.py);
- `terminated`: a fresh workspace whose close gets SIGTERM in its ingest, then closed again.
The flows the selected tests need start together when the first of them runs; all of them take
about four minutes on two busy cores (~5 CPU-minutes in all).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    KILL_POINTS,
    ORPHAN_POINT,
    PERIOD,
    SCENARIO,
    Closed,
    Finished,
    Meterbook,
    close,
    copy_workspace,
    draft_wallet_entries,
    duplicated_mart_rows,
    finalized_document,
    group_members,
    in_parallel,
    invoice_prefix,
    invoices_json,
    kill_group,
    ledger,
    new_workspace,
    run,
    run_event_dbs,
    run_statuses,
    wait_for_step,
    wait_until,
)
from e2e_ui import UiOutcome, drive_the_ui

from orchestration.defs.resources import MeterbookWorkspace
from orchestration.locking import WorkspaceLocked, workspace_lock

FAULTS = Path(__file__).resolve().parents[1] / "fault_injection"


def sleep_in_finalize(seconds: float) -> dict:
    """Environment for a meterbook whose finalize sleeps before COMMIT (fault_injection/)."""
    pythonpath = os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH")]))
    return {"METERBOOK_TEST_SLEEP_IN_FINALIZE": str(seconds), "PYTHONPATH": pythonpath}


# --- two closes at once, and the clean reference --------------------------------------------


@dataclass(frozen=True)
class ConcurrentCloses:
    home: Path
    runs: tuple[Finished, Finished]
    invoices: Finished  # `meterbook invoices --json` afterwards
    reference: Closed


def _concurrent_closes(root: Path) -> ConcurrentCloses:
    shared, clean = new_workspace(root / "shared"), new_workspace(root / "clean")
    both = [Meterbook(shared, "close", "--period", PERIOD, name=f"close-{n}") for n in "ab"]
    alone = Meterbook(clean, "close", "--period", PERIOD, name="close-clean")
    runs = tuple(p.wait() for p in both)
    clean_close = alone.wait()
    assert clean_close.returncode == 0, "the clean close failed: " + clean_close.describe()
    shared_invoices, reference = in_parallel(
        lambda: run(shared, "invoices", "--period", PERIOD, "--json"),
        lambda: Closed.of(clean),
    )
    return ConcurrentCloses(shared, runs, shared_invoices, reference)


# --- from the closed reference ------------------------------------------------------------


@dataclass(frozen=True)
class FinalizeRace:
    home: Path
    close: Finished
    finalize: Finished
    invoices_json: str
    ledger: dict
    expected_json: str  # the reference's drafts, numbered and finalized


@dataclass(frozen=True)
class KilledFinalize:
    home: Path
    ledger_after_kill: dict
    lock_free_after_kill: bool
    refinalize: Finished
    invoices_json: str
    ledger: dict
    expected_json: str
    ledger_after_second_finalize: dict
    draft_wallet_entries: list  # the reference close's, which finalization must freeze as-is


def _rerun(reference: Closed, home: Path) -> Closed:
    copy_workspace(reference.home, home)
    close(home)
    return Closed.of(home)


def _seen_in_the_ui(reference: Closed, root: Path) -> UiOutcome:
    """The UI after a CLI close: the reference's, whose Dagster instance the copy carries."""
    return drive_the_ui(copy_workspace(reference.home, root / "home"))


def _finalize_races_close(reference: Closed, home: Path) -> FinalizeRace:
    copy_workspace(reference.home, home)
    closing = Meterbook(home, "close", "--period", PERIOD)
    finalizing = Meterbook(home, "finalize", "--period", PERIOD)
    closed, finalized = closing.wait(), finalizing.wait()
    return FinalizeRace(
        home, closed, finalized, invoices_json(home), ledger(home), _finalized(reference)
    )


def _finalize_killed_in_transaction(reference: Closed, home: Path) -> KilledFinalize:
    copy_workspace(reference.home, home)
    victim = Meterbook(home, "finalize", "--period", PERIOD, env=sleep_in_finalize(600))
    log = home / "logs" / "finalize_invoices.log"
    # finalize.py prints this once every row is inserted, just before COMMIT
    wait_until(
        lambda: _alive(victim) and log.exists() and "sleeping" in log.read_text(),
        600,
        "the finalize to reach its COMMIT",
        poll=0.05,
    )
    victim.kill(whole_group=True)
    after_kill = ledger(home)
    lock_free = _lock_free(home)
    refinalize = run(home, "finalize", "--period", PERIOD)
    after_refinalize = ledger(home)
    again = run(home, "finalize", "--period", PERIOD)  # finalizing twice changes nothing
    assert again.returncode == 0, again.describe()
    return KilledFinalize(
        home,
        after_kill,
        lock_free,
        refinalize,
        invoices_json(home),
        after_refinalize,
        _finalized(reference),
        ledger(home),
        draft_wallet_entries(reference.home),
    )


def _alive(proc: Meterbook) -> bool:
    assert proc.running(), f"{proc.name} ended early: " + proc.wait().describe()
    return True


def _finalized(reference: Closed) -> str:
    return finalized_document(reference.invoices_json, invoice_prefix(reference.home))


def _lock_free(home: Path) -> bool:
    try:
        with workspace_lock(home, "warehouse", 0):
            return True
    except WorkspaceLocked:
        return False


# --- closes killed at later and later moments ---------------------------------------------


@dataclass(frozen=True)
class AfterKill:
    moment: str
    lock_free: bool
    duplicates: dict | None  # duplicated_mart_rows, once the marts exist


@dataclass(frozen=True)
class KilledCloses:
    after_kills: tuple[AfterKill, ...]
    orphans: list[tuple[int, str]]  # processes of the last killed close still alive after it
    writer_probe_error: str | None  # a writer started right then: None = it got the warehouse
    final_close: Finished
    final: Closed | None
    runs_after: dict[str, str]  # every run's status once the final close has ended


def _kill_at(home: Path, moment: str, marker, whole_group: bool = True) -> Meterbook:
    before = run_event_dbs(home)
    victim = Meterbook(home, "close", "--period", PERIOD, name="close-killed")
    if marker is None:
        time.sleep(0.5)
    else:
        wait_for_step(victim, before, *marker)
    assert victim.running(), f"the close ended before the kill point {moment!r}"
    victim.kill(whole_group=whole_group)
    return victim


def _state_after_kill(home: Path, moment: str) -> AfterKill:
    duplicates = None
    if (home / "warehouse.duckdb").exists():
        try:
            duplicates = duplicated_mart_rows(home)
        except Exception as exc:  # noqa: BLE001 (the killed runs had not built the marts yet)
            if "does not exist" not in str(exc):
                raise
    return AfterKill(moment, _lock_free(home), duplicates)


def _probe_writer(home: Path) -> str | None:
    """Open the warehouse the way every writer does (lock, then connect); report a failure."""
    try:
        with MeterbookWorkspace(home=str(home)).warehouse() as con:
            con.execute("SELECT 1").fetchall()
    except Exception as exc:  # noqa: BLE001 (the outcome is what the test asserts on)
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def _killed_closes(home: Path) -> KilledCloses:
    new_workspace(home)
    after = []
    for moment, marker in KILL_POINTS:
        _kill_at(home, moment, marker)
        after.append(_state_after_kill(home, moment))
    moment, marker = ORPHAN_POINT
    victim = _kill_at(home, moment, marker, whole_group=False)
    orphans = group_members(victim.pid)
    with ThreadPoolExecutor(max_workers=1) as pool:
        # a writer arriving now, while the killed close's dbt child may still hold the file
        probe = pool.submit(_probe_writer, home)
        time.sleep(1.0)  # time for it to reach the warehouse; then dbt dies mid-write
        kill_group(victim.pid)
    after.append(_state_after_kill(home, moment))
    final_close = run(home, "close", "--period", PERIOD)
    final = Closed.of(home) if final_close.returncode == 0 else None
    return KilledCloses(
        tuple(after), orphans, probe.result(), final_close, final, run_statuses(home)
    )


# --- a close stopped by SIGTERM --------------------------------------------------------------


@dataclass(frozen=True)
class Terminated:
    stopped: Finished  # the close that got SIGTERM
    seconds_to_exit: float
    runs_after_stop: dict[str, str]
    lock_free: bool
    next_close: Finished


def _terminated_close(home: Path) -> Terminated:
    new_workspace(home)
    before = run_event_dbs(home)
    victim = Meterbook(home, "close", "--period", PERIOD, name="close-terminated")
    wait_for_step(victim, before, "raw_events", "STEP_START")
    sent = time.monotonic()
    victim.popen.send_signal(signal.SIGTERM)  # the process alone, as `kill PID` does
    stopped = victim.wait()
    seconds = time.monotonic() - sent
    return Terminated(
        stopped,
        seconds,
        run_statuses(home),
        _lock_free(home),
        run(home, "close", "--period", PERIOD),
    )


# --- every flow at once --------------------------------------------------------------------


class Flows:
    """The flows started for this session; `of(name)` waits for one and re-raises its error,
    so one broken flow fails its own tests only."""

    def __init__(self, futures: dict[str, Future]):
        self._futures = futures

    def of(self, name: str):
        return self._futures[name].result()


# flow -> the fixtures whose tests need it (the reference comes from `concurrent_closes`)
NEEDED_BY = {
    "concurrent_closes": {
        "concurrent_closes",
        "reference",
        "rerun",
        "race",
        "killed_finalize",
        "ui",
    },
    "killed_closes": {"killed_closes"},
    "ui": {"ui"},
    "rerun": {"rerun"},
    "race": {"race"},
    "killed_finalize": {"killed_finalize"},
    "terminated": {"terminated"},
}


@pytest.fixture(scope="session")
def flows(request, tmp_path_factory) -> Iterator[Flows]:
    """Starts, all at once, the flows the selected tests need (the reference when any needs it)."""
    root = tmp_path_factory.mktemp("e2e")
    selected = {name for item in request.session.items for name in item.fixturenames}
    wanted = {flow for flow, users in NEEDED_BY.items() if users & selected}
    with ThreadPoolExecutor(max_workers=len(NEEDED_BY)) as pool:
        started: dict[str, Future] = {}

        def from_reference(flow: Callable[[Closed, Path], Any], name: str) -> Callable:
            return lambda: flow(started["concurrent_closes"].result().reference, root / name)

        flows = {
            "concurrent_closes": lambda: _concurrent_closes(root / "concurrent"),
            "killed_closes": lambda: _killed_closes(root / "killed_closes"),
            "ui": from_reference(_seen_in_the_ui, "ui"),
            "rerun": from_reference(_rerun, "rerun"),
            "race": from_reference(_finalize_races_close, "race"),
            "killed_finalize": from_reference(_finalize_killed_in_transaction, "k_final"),
            "terminated": lambda: _terminated_close(root / "terminated"),
        }
        for name, flow in flows.items():  # the reference first: four flows wait for it
            if name in wanted:
                started[name] = pool.submit(flow)
        yield Flows(started)
    # leaving the pool waits for every flow: no `meterbook` process outlives the session


@pytest.fixture
def concurrent_closes(flows) -> ConcurrentCloses:
    return flows.of("concurrent_closes")


@pytest.fixture
def reference(flows) -> Closed:
    """One clean close of a fresh workspace: every other outcome must equal it."""
    return flows.of("concurrent_closes").reference


@pytest.fixture
def rerun(flows) -> Closed:
    return flows.of("rerun")


@pytest.fixture
def race(flows) -> FinalizeRace:
    return flows.of("race")


@pytest.fixture
def killed_finalize(flows) -> KilledFinalize:
    return flows.of("killed_finalize")


@pytest.fixture
def killed_closes(flows) -> KilledCloses:
    return flows.of("killed_closes")


@pytest.fixture
def terminated(flows) -> Terminated:
    return flows.of("terminated")


@pytest.fixture
def ui(flows) -> UiOutcome:
    return flows.of("ui")


def pytest_collection_modifyitems(config, items):
    """Every end-to-end test runs on the shared scenario `bulk_a`: skip them, saying why, when
    ../shared/scenarios is not beside the repository."""
    if SCENARIO.is_dir():
        return
    here = Path(__file__).resolve().parent
    skip = pytest.mark.skip(reason=f"no scenario at {SCENARIO} (../shared/scenarios is absent)")
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(skip)
