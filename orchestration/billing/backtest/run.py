"""One price backtest from start to end: copy, baseline, candidate, results (SPEC 10).

    backtests/<id>/            what a backtest leaves: results.json, the CSVs, report.html,
                               baseline_differences.json when the baseline failed, and with
                               --keep candidate.duckdb, the candidate's re-rated warehouse
    backtests/sandbox/         the warehouse copy rated in; one backtest at a time (a lock),
                               and always the same path, so dbt's partial parse made against
                               it serves every backtest (a new path parses the whole project)

The baseline runs first, in a copy taken under the workspace lock; only when it reproduces
every billed invoice to the cent is the candidate rated, in a second, untouched copy of the
same moment. The workspace's own warehouse is only ever read.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestration.billing.backtest.replay import (
    BaselineMismatch,
    Rate,
    ReplayMonth,
    baseline_differences,
    billed_invoices,
    copy_warehouse,
    months_to_replay,
    replay_months,
)
from orchestration.billing.backtest.report import write_all
from orchestration.billing.backtest.results import BacktestResult, compare
from orchestration.catalog.models import Catalog
from orchestration.locking import workspace_lock
from orchestration.sql import connect

FOLDER = "backtests"
SANDBOX = "sandbox"
DIFFERENCES = "baseline_differences.json"
KEPT = "candidate.duckdb"  # the candidate's warehouse copy, with --keep


@dataclass(frozen=True)
class BacktestRequest:
    current: Catalog
    candidate: Catalog
    first: str
    last: str
    backtest_id: str
    # keep the candidate's warehouse copy: backtests/<id>/candidate.duckdb
    keep_sandbox: bool = False


@dataclass(frozen=True)
class BacktestRun:
    folder: Path
    result: BacktestResult
    files: dict[str, Path]
    months: tuple[ReplayMonth, ...]


def new_backtest_id(now: datetime) -> str:
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def backtest_folder(home: Path, backtest_id: str) -> Path:
    if not backtest_id or not all(c.isalnum() or c in "-_" for c in backtest_id):
        raise ValueError(f"a backtest id is letters, digits, '-' and '_', got {backtest_id!r}")
    return home / FOLDER / backtest_id


def run_backtest(
    home: Path,
    hold_warehouse: Callable[[], AbstractContextManager[Path]],
    request: BacktestRequest,
    rate: Rate,
    say: Callable[[str], None] = lambda _message: None,
) -> BacktestRun:
    """Run one backtest. `hold_warehouse()` holds the workspace's warehouse (no writer in it)
    and yields its path; it is held only while the copy is taken. Raises BaselineMismatch
    (with baseline_differences.json written) when the baseline does not reproduce billing."""
    folder = backtest_folder(home, request.backtest_id)
    sandbox = home / FOLDER / SANDBOX / "warehouse.duckdb"
    pristine = home / FOLDER / SANDBOX / "pristine.duckdb"
    with workspace_lock(home, "backtest", 0), _cleaned(sandbox, pristine):
        with hold_warehouse() as warehouse:
            copy_warehouse(warehouse, pristine)
        copy_warehouse(pristine, sandbox)
        # read from the copy the baseline is rated in (reading may create views), before it is
        months, billed = _billed(sandbox, request)
        say(f"baseline: re-rating {len(months)} month(s) under the current catalog")
        baseline = replay_months(sandbox, request.current, months, rate, say)
        differences = baseline_differences(billed, baseline)
        del billed  # not needed past this point: three months of invoices, freed early
        if differences:
            folder.mkdir(parents=True, exist_ok=True)
            _write_json(folder / DIFFERENCES, differences)
            raise BaselineMismatch(differences)
        say("baseline reproduces every billed invoice to the cent; rating the candidate")
        _move(pristine, sandbox)
        candidate = replay_months(sandbox, request.candidate, months, rate, say)
        if request.keep_sandbox:
            folder.mkdir(parents=True, exist_ok=True)
            _move(sandbox, folder / KEPT)
    result = compare(_flat(baseline), _flat(candidate), request.first, request.last)
    return BacktestRun(folder, result, write_all(result, folder), tuple(months))


def _billed(sandbox: Path, request: BacktestRequest):
    con = connect(sandbox)
    try:
        months = months_to_replay(con, request.first, request.last)
        billed = {m.month: billed_invoices(con, request.current, m.month) for m in months}
    finally:
        con.close()
    return months, billed


@contextmanager
def _cleaned(sandbox: Path, pristine: Path) -> Iterator[None]:
    """Removes the sandbox copies afterwards, whatever happened."""
    try:
        yield
    finally:
        _remove(pristine)
        _remove(sandbox)


def _files(path: Path) -> Iterator[Path]:
    yield path
    yield Path(str(path) + ".wal")


def _remove(path: Path) -> None:
    for file in _files(path):
        file.unlink(missing_ok=True)


def _move(source: Path, destination: Path) -> None:
    _remove(destination)
    for file, target in zip(_files(source), _files(destination), strict=True):
        if file.exists():
            os.replace(file, target)


def _flat(by_month: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [invoice for month in sorted(by_month) for invoice in by_month[month]]


def _write_json(path: Path, value: Any) -> None:
    scratch = path.with_suffix(".tmp")
    scratch.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(scratch, path)


def read_differences(home: Path, backtest_id: str) -> list[dict[str, Any]]:
    path = backtest_folder(home, backtest_id) / DIFFERENCES
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
