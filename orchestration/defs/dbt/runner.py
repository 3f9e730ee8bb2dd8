"""Run the dbt project in-process: the argument list is a pure function, the run is not.

Partitions reach dbt as environment variables (`METERBOOK_MIN_DATE`, `METERBOOK_MAX_DATE`:
daily partitions, [min, max); `METERBOOK_CLOSE_MONTH`: the monthly billing partition), read
by the macro `meterbook_partition` only while dbt executes, never while it parses. As
`--vars` they made dbt parse the whole project again whenever they differed from the vars of
the parse it was given, that is for every partition: 3-4 s of each build, two builds per
close. The values are checked here, so a malformed key never reaches the SQL dbt renders.

For the same reason each warehouse keeps its own partial parse, in `dbt/` beside it: the
profile holds the warehouse's path, and dbt parses everything again when the profile differs
from the one of the parse it is given. A warehouse without one yet starts from the parse
shared by this checkout's warehouses (shared_parse.py).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from orchestration.billing.month import BillingMonth
from orchestration.defs.dbt.shared_parse import adopt_shared_parse, profile_env, share_parse
from orchestration.workspace import DBT_PROJECT_DIR

COMMANDS = ("build", "run", "test", "compile", "parse", "ls", "seed")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
PROJECT_TARGET = DBT_PROJECT_DIR / "target"
# the folders of one invocation each: dagster-dbt's <asset>-<run id>-<uuid>, and our scratch
_INVOCATION_FOLDER = re.compile(r"^([a-z_]+-[0-9a-f]{7}-[0-9a-f]{7}|run_dbt-.+|parse-.+)$")
STALE_TARGET_DAYS = 14


def _is_month(text: str) -> bool:
    try:
        BillingMonth.parse(text)
    except ValueError:
        return False
    return True


_PARTITION_FORMATS = {
    "min_date": _DATE.match,
    "max_date": _DATE.match,
    "close_month": _is_month,
    # a price backtest replays a month with the events read up to its build (no later ones)
    "max_read_seq": re.compile(r"^[0-9]{1,18}$").match,
}
# No partition means everything. The macro meterbook_partition has the same defaults, for a
# dbt run by hand; our invocations always set all three variables.
PARTITION_DEFAULTS = {
    "min_date": "1970-01-01",
    "max_date": "9999-12-31",
    "close_month": "",
    "max_read_seq": "",
}
PARTIAL_PARSE = "partial_parse.msgpack"
# where the parse shared by this checkout's warehouses is kept (shared_parse.py)
SHARED_PARSE_UNDER = PROJECT_TARGET


class DbtRunError(RuntimeError):
    """dbt failed; the message is dbt's own (the failing node and its error)."""


def _check_partition(partition: Mapping) -> None:
    unknown = sorted(set(partition) - set(_PARTITION_FORMATS))
    if unknown:
        raise ValueError(f"unknown dbt partition variable(s): {', '.join(unknown)}")
    for name, value in partition.items():
        if value is not None and not (isinstance(value, str) and _PARTITION_FORMATS[name](value)):
            raise ValueError(f"dbt partition {name}={value!r} is not in the expected format")
    low, high = partition.get("min_date"), partition.get("max_date")
    if low and high and low >= high:
        raise ValueError(f"min_date {low} must be before max_date {high} (the range is [min, max))")


def dbt_args(command: str, select: str | None = None) -> list[str]:
    """The dbt CLI arguments for one invocation (its partition goes in `partition_env`)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown dbt command {command!r}")
    return [command, "--select", select] if select else [command]


def partition_env(partition: Mapping[str, str | None] | None) -> dict[str, str]:
    """The environment variables that carry a partition to dbt: all three, always; a value
    left out (or None) keeps its default."""
    given = dict(partition or {})
    _check_partition(given)
    values = {**PARTITION_DEFAULTS, **{k: v for k, v in given.items() if v is not None}}
    return {f"METERBOOK_{name.upper()}": value for name, value in values.items()}


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` set, as it was afterwards: dbt reads its variables there, and
    dagster-dbt hands a copy of it to the dbt subprocess."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def partial_parse_cache(warehouse_path: Path) -> Path:
    """Where the last parse made against this warehouse is kept between invocations."""
    return Path(warehouse_path).resolve().parent / "dbt" / PARTIAL_PARSE


def seed_partial_parse(
    cache: Path, target: Path, profile: Mapping[str, str | None] | None = None
) -> None:
    """Start an invocation from the warehouse's last parse, in place of any other it was given:
    dbt then parses only the files that changed since (it compares every file's checksum, its
    own version, the profile and vars, and parses everything when any of them differs). A
    warehouse without one starts from the parse shared under SHARED_PARSE_UNDER, when the profile
    the invocation renders from the environment `profile` allows it (shared_parse.py)."""
    if cache.exists():
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(cache, target / PARTIAL_PARSE)
    elif profile is not None:
        adopt_shared_parse(target, dict(profile), SHARED_PARSE_UNDER)


def keep_partial_parse(
    target: Path, cache: Path, profile: Mapping[str, str | None] | None = None
) -> None:
    """Keep a successful invocation's parse for the next one, and share it (with the
    environment `profile` its profile was rendered from) for warehouses without one; renamed
    into place, so a reader never finds half a file."""
    made = target / PARTIAL_PARSE
    if not made.exists():
        return
    cache.parent.mkdir(parents=True, exist_ok=True)
    scratch = cache.with_name(f".{cache.name}.{os.getpid()}")
    shutil.copyfile(made, scratch)
    os.replace(scratch, cache)
    if profile is not None:
        share_parse(target, dict(profile), SHARED_PARSE_UNDER)


def failure_message(result) -> str:
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


def run_dbt(
    warehouse_path: Path,
    args: list[str],
    partition: Mapping[str, str | None] | None = None,
    target_path: Path | None = None,
) -> None:
    """Run dbt on the warehouse at `warehouse_path` for `partition` (None: everything); raise
    DbtRunError on any failure.

    dbt writes its artifacts and logs to `target_path`, or else to a `scratch_target` that is
    removed after a success and kept, and named in the error, after a failure.
    """
    from dbt.cli.main import dbtRunner  # noqa: PLC0415 (slow import, only when running)

    env = {"METERBOOK_WAREHOUSE": str(Path(warehouse_path).resolve()), **partition_env(partition)}
    private = target_path is None
    target = scratch_target("run_dbt-") if private else Path(target_path)
    cache = partial_parse_cache(warehouse_path)
    with environment(env):
        profile = profile_env()
        seed_partial_parse(cache, target, profile)
        try:
            result = dbtRunner().invoke([*args, *project_args(target)])
        finally:
            # dbt-duckdb keeps its connection open after an in-process run; the warehouse file
            # stays locked against the next process (a dbt subprocess) until it is closed
            from dbt.adapters.duckdb.connections import DuckDBConnectionManager  # noqa: PLC0415

            DuckDBConnectionManager.close_all_connections()
    if not result.success:
        where = f" (its logs: {target})" if private else ""
        raise DbtRunError(f"dbt {args[0] if args else ''} failed{where}: {failure_message(result)}")
    keep_partial_parse(target, cache, profile)
    if private:
        shutil.rmtree(target, ignore_errors=True)
        prune_stale_targets(target.parent)
