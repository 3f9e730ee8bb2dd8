"""Run the dbt project in-process: the argument list is a pure function, the run is not.

Partitions reach dbt only as vars (`min_date`, `max_date`: daily partitions, [min, max);
`close_month`: the monthly billing partition). They are checked here, so a malformed key
never reaches the SQL that dbt renders.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestration.workspace import DBT_PROJECT_DIR

COMMANDS = ("build", "run", "test", "compile", "parse", "ls", "seed")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
PROJECT_TARGET = DBT_PROJECT_DIR / "target"
# the folders of one invocation each: dagster-dbt's <asset>-<run id>-<uuid>, and our scratch
_INVOCATION_FOLDER = re.compile(r"^([a-z_]+_models-[0-9a-f]{7}-[0-9a-f]{7}|run_dbt-.+|parse-.+)$")
STALE_TARGET_DAYS = 14
_VAR_FORMATS = {"min_date": _DATE, "max_date": _DATE, "close_month": _MONTH}


class DbtRunError(RuntimeError):
    """dbt failed; the message is dbt's own (the failing node and its error)."""


def _check_vars(vars: dict) -> None:
    unknown = sorted(set(vars) - set(_VAR_FORMATS))
    if unknown:
        raise ValueError(f"unknown dbt var(s): {', '.join(unknown)}")
    for name, value in vars.items():
        if value is not None and not (isinstance(value, str) and _VAR_FORMATS[name].match(value)):
            raise ValueError(f"dbt var {name}={value!r} is not in the expected format")
    low, high = vars.get("min_date"), vars.get("max_date")
    if low and high and low >= high:
        raise ValueError(f"min_date {low} must be before max_date {high} (the range is [min, max))")


def dbt_args(command: str, select: str | None, vars: dict) -> list[str]:
    """The dbt CLI arguments for one invocation. Vars left out keep dbt_project.yml defaults."""
    if command not in COMMANDS:
        raise ValueError(f"unknown dbt command {command!r}")
    _check_vars(vars)
    args = [command]
    if select:
        args += ["--select", select]
    if vars:
        args += ["--vars", json.dumps(vars, sort_keys=True)]
    return args


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _failure_message(result) -> str:
    if result.exception is not None:
        return str(result.exception)
    failed = [
        f"{r.node.name}: {r.message}"
        for r in getattr(result.result, "results", None) or []
        if str(r.status) in ("error", "fail", "runtime error")
    ]
    return "; ".join(failed) or "dbt failed without an error message"


def project_args(target_path: Path) -> list[str]:
    """Where dbt finds the project and its profile, and where it writes artifacts and logs."""
    project = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    return [*project, "--target-path", str(target_path), "--log-path", str(target_path)]


def scratch_target(prefix: str, under: Path = PROJECT_TARGET) -> Path:
    """A new folder of its own for one dbt invocation's artifacts, under the project's target/.

    Never target/ itself: every process that loads the Dagster definitions reads
    target/manifest.json, and dbt rewrites its artifacts in place, so a step starting beside
    the invocation could read half a manifest.
    """
    under.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=under))


def prune_stale_targets(under: Path, days: float = STALE_TARGET_DAYS) -> int:
    """Remove the invocation folders under `under` left more than `days` ago; returns how many.

    A failed invocation keeps its folder for whoever looks into it; a schedule failing night
    after night would otherwise fill the disk. Only folders named like an invocation's are
    touched (never dbt's own compiled/ and run/), and only old ones: a build under way is new.
    """
    cutoff = time.time() - days * 86400
    removed = 0
    for folder in under.iterdir() if under.is_dir() else ():
        if not _INVOCATION_FOLDER.match(folder.name) or not folder.is_dir():
            continue
        try:
            stale = folder.stat().st_mtime < cutoff
        except FileNotFoundError:  # another process removed it meanwhile
            continue
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed


def run_dbt(warehouse_path: Path, args: list[str], target_path: Path | None = None) -> None:
    """Run dbt on the warehouse at `warehouse_path`; raise DbtRunError on any failure.

    dbt writes its artifacts and logs to `target_path`, or else to a `scratch_target` that is
    removed after a success and kept, and named in the error, after a failure.
    """
    from dbt.cli.main import dbtRunner  # noqa: PLC0415 (slow import, only when running)

    private = target_path is None
    target = scratch_target("run_dbt-") if private else target_path
    with _env("METERBOOK_WAREHOUSE", str(Path(warehouse_path).resolve())):
        try:
            result = dbtRunner().invoke([*args, *project_args(target)])
        finally:
            # dbt-duckdb keeps its connection open after an in-process run; the warehouse file
            # stays locked against the next process (a dbt subprocess) until it is closed
            from dbt.adapters.duckdb.connections import DuckDBConnectionManager  # noqa: PLC0415

            DuckDBConnectionManager.close_all_connections()
    if not result.success:
        where = f" (its logs: {target})" if private else ""
        raise DbtRunError(
            f"dbt {args[0] if args else ''} failed{where}: {_failure_message(result)}"
        )
    if private:
        shutil.rmtree(target, ignore_errors=True)
        prune_stale_targets(target.parent)
