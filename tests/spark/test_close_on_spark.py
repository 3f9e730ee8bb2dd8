"""A close on Spark bills exactly as a close on DuckDB: every shared scenario, both engines.

Each scenario is closed through the real commands in a new workspace whose catalog sets
`settings.warehouse: spark` (the usage models built by a standalone Spark cluster, a master,
a worker and the Thrift server on 127.0.0.1 started for this module, through dbt-spark's
`thrift` method, meterbook's default; the landing files read on a Spark Connect server started
beside it, METERBOOK_SPARK_REMOTE), and compared with the DuckDB close of the same
scenario, the default: the one tests/scenarios/test_scenarios.py does and records
(tests/duckdb_closes.py), or one of our own when that test is not in the run. The invoice JSON
of `meterbook invoices --json` must be byte-identical, every fate count equal, and every
event's fate and reason; Spark's steps read the raw events its own ingest wrote. The nasty
inputs (every awkward value and property name of the dialect tests, in every aggregation, with every kind of reject, in plain, gzip and
BOM-prefixed files) are closed on both engines side by side, then a day of them refreshed as
the nightly schedule does: its daily usage must be equal too; and a finalized month re-rated
by late events, with a catalog change that rebuilds every day's usage, on both engines: the
next month's invoices, the fates and every day's usage equal. The Spark closes run two at a
time on the one server: each workspace has its own schemas there (METERBOOK_SPARK_SCHEMA,
derived from its folder), which this proves too.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import duckdb
import pytest
import yaml
from dagster import DagsterInstance
from duckdb_closes import FATES, outcome_of, recorded, shared_root, wait_for
from spark_cluster import HOST, Cluster, running_cluster

from orchestration.billing.line_kinds import kinds_in_group
from orchestration.defs.dbt.project import model_key
from orchestration.defs.ingest.assets import RAW_EVENTS

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scenarios"))
from test_scenarios import NOW, SCENARIOS, meterbook_command, months_of  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_metering_dialects import AWKWARD_NAMES, AWKWARD_VALUES  # noqa: E402

ENGINES = ("duckdb", "spark")
PERIOD = "2026-10"
SIDE_BY_SIDE = 2
SPARK_BUILT = ("int_events_fated", "int_meter_quantities_windowed")  # by a close


def _scenario_dirs() -> list[Path]:
    return sorted(p.parent for p in SCENARIOS.glob("*/scenario.yaml")) if SCENARIOS.exists() else []


def workspace(folder: Path, home: Path, engine: str) -> Path:
    """A new workspace with the scenario's catalog and landing files, closing on `engine`."""
    shutil.copytree(folder / "catalog", home / "catalog")
    # settings merge across the catalog's files (one file per concern)
    (home / "catalog" / "warehouse.yaml").write_text(
        yaml.safe_dump({"settings": {"warehouse": engine}})
    )
    if (folder / "events").is_dir():
        shutil.copytree(folder / "events", home / "landing" / "events")
    return home


@pytest.fixture(scope="module")
def cluster(spark_runtime, tmp_path_factory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("spark-cluster")
    with running_cluster(work, memory="2g", connect=True) as started:
        yield started


def environment(cluster: Cluster, now: str = NOW) -> dict[str, str]:
    """The models built through the Thrift server, the landing files read on the Spark Connect
    server (no JVM started by each command)."""
    env = dict(os.environ, METERBOOK_NOW=now, METERBOOK_SPARK_METHOD="thrift")
    env.update(METERBOOK_SPARK_HOST=HOST, METERBOOK_SPARK_PORT=str(cluster.thrift_port))
    env.update(METERBOOK_SPARK_REMOTE=cluster.connect_url)
    env.pop("DAGSTER_HOME", None)  # the workspace's own instance
    return env


def meterbook(args: list[str], home: Path, cluster: Cluster, now: str = NOW) -> str:
    env = dict(environment(cluster, now), METERBOOK_HOME=str(home))
    done = subprocess.run(
        [*meterbook_command(), *args, "--home", str(home)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, f"meterbook {' '.join(args)} failed:\n{done.stderr[-3000:]}"
    return done.stdout


def close(folder: Path, home: Path, cluster: Cluster) -> dict:
    """Every period of the scenario closed: see close_months."""
    return close_months(months_of(folder), home, cluster)


def close_months(months: list[tuple], home: Path, cluster: Cluster, now: str = NOW) -> dict:
    """Each month closed; its invoices as the command prints them, every event's fate and
    the fate counts."""
    invoices = {}
    for period, _ in months:
        meterbook(["close", "--period", period], home, cluster, now)
        shown = meterbook(["invoices", "--period", period, "--json"], home, cluster, now)
        invoices[period] = shown
    return outcome_of(home, invoices)


def duckdb_close(folder: Path, request, tmp_path_factory, home: Path, cluster: Cluster) -> dict:
    """The scenario's DuckDB close: the one tests/scenarios/test_scenarios.py records when this
    run has its test of the scenario (under xdist on the other worker: waited for; in one
    process it ran first), else a close of our own in `home`."""
    root = shared_root(tmp_path_factory)
    in_this_run = any(
        getattr(item, "originalname", None) == "test_scenario"
        and item.callspec.params["folder"] == folder
        for item in request.session.items
    )
    if in_this_run and os.environ.get("PYTEST_XDIST_WORKER"):
        return wait_for(root, folder.name)
    found = recorded(root, folder.name) if in_this_run else None
    return found or close(folder, workspace(folder, home, "duckdb"), cluster)


@pytest.fixture(scope="module")
def spark_closes(cluster, request, tmp_path_factory) -> Iterator[dict[str, Future]]:
    """The selected scenarios closed on Spark as soon as the first of their tests starts, two
    at a time on the one server (each workspace has its own schemas there); leaving waits
    for every one of them."""
    selected = {
        item.callspec.params["folder"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_scenario_bills_alike_on_spark"
    }
    root = tmp_path_factory.mktemp("spark-closes")

    def closed(folder: Path) -> tuple[Path, dict]:
        home = workspace(folder, root / folder.name, "spark")
        return home, close(folder, home, cluster)

    with ThreadPoolExecutor(max_workers=SIDE_BY_SIDE) as pool:
        yield {folder.name: pool.submit(closed, folder) for folder in sorted(selected)}


@pytest.mark.slow
@pytest.mark.parametrize("folder", _scenario_dirs(), ids=lambda p: p.name)
def test_scenario_bills_alike_on_spark(
    spark_closes, cluster, folder, request, tmp_path_factory, tmp_path
):
    home, theirs = spark_closes[folder.name].result()
    ours = duckdb_close(folder, request, tmp_path_factory, tmp_path / "duckdb", cluster)
    assert ours["counts"] == theirs["counts"], "every fate count equal"
    assert ours["fates"] == theirs["fates"], "every event's fate and reason equal"
    assert len(ours["fates"]) == sum(count for *_, count in ours["counts"]) > 0
    for period, shown in ours["invoices"].items():
        assert theirs["invoices"][period] == shown, f"{period}: invoice JSON differs on Spark"
    lake = home / "lake" / "out"
    assert sorted(p.name for p in lake.iterdir()) == sorted(SPARK_BUILT), "built on Spark"
    # Spark read the landing files itself: its steps read the raw events its ingest wrote
    # (by event day), not a copy of DuckDB's
    assert list((home / "lake" / "raw_events").glob("ingest=*/event_date=*/*.parquet"))
    assert not (home / "lake" / "in" / "meterbook_raw.raw_events").exists()
    # what the Dagster UI shows of them: materialized by Spark, with the rows read back
    shown = spark_materializations(home)
    assert {model: meta["engine"] for model, meta in shown.items()} == dict.fromkeys(
        SPARK_BUILT, "spark"
    )
    assert shown["int_events_fated"]["rows"] == len(theirs["fates"])
    # and the landing files were read on the Spark Connect server, not a Spark of the command's
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        ingest = instance.get_latest_materialization_event(RAW_EVENTS).asset_materialization
    assert ingest.metadata["read_on_spark"].value == cluster.connect_url


def spark_materializations(home: Path) -> dict[str, dict]:
    """The metadata of the latest materialization of each model a close builds on Spark, as
    the workspace's Dagster instance records it (and its UI shows it)."""
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        events = {m: instance.get_latest_materialization_event(model_key(m)) for m in SPARK_BUILT}
    return {
        model: {k: v.value for k, v in event.asset_materialization.metadata.items()}
        for model, event in events.items()
    }


REFRESH = (
    "import sys; from orchestration.pipeline import run_job; "
    "from orchestration.workspace import Workspace; "
    "outcome = run_job(Workspace.from_env(sys.argv[1]), 'daily_usage_refresh', sys.argv[2]); "
    "sys.exit(outcome.error)"
)
DAILY = "SELECT * EXCLUDE (usage_date), usage_date FROM marts.fct_daily_meter_usage ORDER BY ALL"
BUSIEST_DAY = (
    "SELECT event_date::VARCHAR FROM intermediate.int_events_fated WHERE fate = 'billable' "
    "GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1"
)


def close_and_refresh(home: Path, cluster: Cluster) -> dict:
    """The month closed, then the nightly refresh of its busiest day (the close builds no
    daily usage)."""
    closed = close_months([(PERIOD, None)], home, cluster)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        (day,) = con.execute(BUSIEST_DAY).fetchone()
    return {**closed, "daily": refresh_day(home, day, cluster)}


def refresh_day(home: Path, day: str, cluster: Cluster) -> list[tuple]:
    """The nightly refresh of `day` (a Dagster job, as the schedule runs it); the daily usage."""
    done = subprocess.run(
        [sys.executable, "-c", REFRESH, str(home), day], env=environment(cluster),
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, f"daily refresh of {day} failed:\n{done.stderr[-3000:]}"
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(DAILY).fetchall()


# the nasty inputs: every awkward value and property name the dialect tests evaluate, sent to
# every aggregation, through landing files in three forms with the rejects the ingest fates
# (v holds the value; a repeated key in a long object is malformed, so v is not repeated)
NAMES = [name for name in AWKWARD_NAMES if name != "v"]
NASTY_CATALOG = {
    "meters": [
        {"code": "total", "event_name": "m", "aggregation": "sum", "expression": "v / 3",
         "unit": {"divide_by": 7, "rounding": "nearest"}},
        {"code": "peak", "event_name": "m", "aggregation": "max", "expression": "v"},
        {"code": "low", "event_name": "m", "aggregation": "min", "expression": "v * 2"},
        {"code": "last", "event_name": "m", "aggregation": "latest", "expression": "v"},
        {"code": "level", "event_name": "m", "aggregation": "time_weighted", "expression": "v"},
        {"code": "kinds", "event_name": "m", "aggregation": "count_unique", "expression": "v"},
        {"code": "calls", "event_name": "m", "aggregation": "count", "group_by": NAMES},
    ],
    "exclusions": [{"reason": "internal", "property": "it's.[x]", "op": "eq", "value": "2.50"}],
    "plans": [{"code": "p", "currency": "USD", "versions": [{
        "version": 1, "effective_from": "2026-01-01",
        "charges": [{"meter": m, "model": "per_unit", "unit_price": "0.000001"}
                    for m in ("total", "peak", "low", "last", "level", "kinds", "calls")],
    }]}],
    "customers": [
        {"id": "acme", "timezone": "UTC", "tax_rate": "0"},
        {"id": "tokyo", "timezone": "Asia/Tokyo", "tax_rate": "0.1"},
        {"id": "tokyo_dev", "parent_id": "tokyo"},
    ],
    "subscriptions": [
        {"id": "s_acme", "customer_id": "acme", "plan": "p", "start_date": "2026-01-01"},
        {"id": "s_tokyo", "customer_id": "tokyo", "plan": "p", "start_date": "2026-10-10"},
    ],
}  # fmt: skip


def nasty_events() -> list[str]:
    """JSON lines: each awkward value under `v` and under each awkward name, for three
    customers (one unknown) through October, with a repeated key of another payload."""
    lines = []
    customers = ("acme", "tokyo", "tokyo_dev", "nobody")
    for i, value in enumerate(AWKWARD_VALUES):
        properties = ", ".join(
            f"{json.dumps(name)}: {value if k == i % len(NAMES) else json.dumps(str(k))}"
            for k, name in enumerate(NAMES)
        )
        at = f"2026-10-{1 + i % 31:02d}T{i % 24:02d}:{i % 60:02d}:00Z"
        for customer in customers[: 2 + i % 3]:
            lines.append(
                f'{{"event_id": "e{i}", "customer_id": "{customer}", "event_name": "m", '
                f'"timestamp": "{at}", "properties": {{"v": {value}, {properties}}}}}'
            )
    lines.append(lines[0])  # a duplicate
    lines.append(lines[3].replace("2026-10", "2026-11", 1))  # the same key, another payload
    lines.append(
        '{"event_id": "x", "customer_id": "acme", "event_name": "m", "timestamp": '
        '"2026-10-05T00:00:00Z", "properties": {"v": 1, "it\'s.[x]": "2.50"}}'
    )  # excluded
    lines += ['{"event_id": "broken", ', "not json at all", ""]
    return lines


@pytest.mark.slow
def test_nasty_inputs_bill_alike_on_spark(cluster, tmp_path):
    lines = nasty_events()
    for engine in ENGINES:
        home = tmp_path / engine
        (home / "catalog").mkdir(parents=True)
        document = {**NASTY_CATALOG, "settings": {"warehouse": engine}}
        (home / "catalog" / "catalog.yaml").write_text(yaml.safe_dump(document))
        landing = home / "landing" / "events"
        landing.mkdir(parents=True)
        third = len(lines) // 3
        (landing / "a.jsonl").write_text("\n".join(lines[:third]) + "\n")
        with gzip.open(landing / "b.jsonl.gz", "wt") as out:
            out.write("\r\n".join(lines[third : 2 * third]) + "\r\n")
        (landing / "c.jsonl").write_text("\ufeff" + "\n".join(lines[2 * third :]))
    with ThreadPoolExecutor(max_workers=len(ENGINES)) as pool:
        runs = {e: pool.submit(close_and_refresh, tmp_path / e, cluster) for e in ENGINES}
        ours, theirs = (runs[engine].result() for engine in ENGINES)
    seen = {fate for fate, *_ in ours["counts"]} | {reason for _, reason, _ in ours["counts"]}
    wanted = {"billable", "excluded", "duplicate", "conflict", "malformed", "unknown_customer"}
    assert wanted | {"bad_property"} <= seen, seen
    assert theirs["counts"] == ours["counts"] and theirs["fates"] == ours["fates"]
    assert theirs["invoices"][PERIOD] == ours["invoices"][PERIOD]
    assert ours["daily"], "the refreshed day has usage"
    assert theirs["daily"] == ours["daily"], "the nightly refresh of a day, alike"


# a finalized month's late events re-rate it (rerated_finalized_months), and a catalog change
# rebuilds the daily usage of every day: both through rebuild_models, on Spark as on DuckDB
RERATE_CATALOG = {
    "meters": [{"code": "api_calls", "event_name": "api.request", "aggregation": "count"}],
    "plans": [{"code": "calls", "currency": "USD", "versions": [{
        "version": 1, "effective_from": "2026-01-01",
        "charges": [{"meter": "api_calls", "model": "per_unit", "unit_price": "1.00"}]}]}],
    "customers": [{"id": "acme"}, {"id": "acme_eu", "parent_id": "acme"}, {"id": "globex"}],
    "subscriptions": [
        {"id": "sub_acme", "customer_id": "acme", "plan": "calls", "start_date": "2026-10-01"},
        {"id": "sub_globex", "customer_id": "globex", "plan": "calls", "start_date": "2026-10-01"},
    ],
}  # fmt: skip
AFTER_NOVEMBER = "2026-12-10T00:00:00Z"
ALL_DAYS = "SELECT * EXCLUDE (usage_date), usage_date::VARCHAR FROM marts.fct_daily_meter_usage ORDER BY ALL"


def calls(prefix: str, customer: str, count: int, month: str, env: str = "prod") -> str:
    return "".join(
        json.dumps({"event_id": f"{prefix}{i}", "customer_id": customer,
                    "event_name": "api.request", "timestamp": f"{month}-{i % 28 + 1:02d}T12:00:00Z",
                    "properties": {"env": env}}) + "\n"
        for i in range(count)
    )  # fmt: skip


def rerate_after_finalize(home: Path, cluster: Cluster) -> dict:
    """October closed and finalized; then late October calls and November's, refreshed by the
    nightly job (the fates of their days rebuilt); then more calls and an exclusion new to the
    catalog; November closed (re-rating October, rebuilding every day's usage and fate)."""
    landing = home / "landing" / "events"
    (landing / "oct.jsonl").write_text(
        calls("a", "acme", 10, "2026-10") + calls("g", "globex", 20, "2026-10")
    )
    meterbook(["close", "--period", "2026-10"], home, cluster, AFTER_NOVEMBER)
    meterbook(["finalize", "--period", "2026-10"], home, cluster, AFTER_NOVEMBER)
    (landing / "late.jsonl").write_text(
        calls("eu", "acme_eu", 3, "2026-10") + calls("n", "globex", 6, "2026-11")
    )
    refresh_day(home, "2026-11-01", cluster)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        refreshed = con.execute(FATES).fetchall()
        late_days = con.execute(LATE_DAYS_FATES).fetchone()[0]
    read_back = spark_materializations(home)["int_events_fated"].get("rows") if (
        home / "lake").is_dir() else None  # fmt: skip
    (landing / "later.jsonl").write_text(calls("s", "globex", 2, "2026-11", env="sandbox"))
    exclusion = {"reason": "sandbox", "property": "env", "op": "eq", "value": "sandbox"}
    (home / "catalog" / "exclusions.yaml").write_text(yaml.safe_dump({"exclusions": [exclusion]}))
    closed = close_months([("2026-11", None)], home, cluster, AFTER_NOVEMBER)
    with duckdb.connect(str(home / "warehouse.duckdb"), read_only=True) as con:
        daily = con.execute(ALL_DAYS).fetchall()
    return {**closed, "daily": daily, "refreshed": refreshed, "refresh_read_back": read_back,
            "late_days_fates": late_days}  # fmt: skip


# the fates of the days the late events fall on (those a refresh on Spark rebuilds)
LATE_DAYS_FATES = (
    "SELECT count(*) FROM intermediate.int_events_fated WHERE event_date IN (SELECT DISTINCT "
    "CAST(event_ts AS DATE) FROM meterbook_raw.raw_events WHERE path = 'late.jsonl')"
)


@pytest.mark.slow
def test_a_rerate_and_a_catalog_change_bill_alike_on_spark(cluster, tmp_path):
    for engine in ENGINES:
        (tmp_path / engine / "catalog").mkdir(parents=True)
        document = {**RERATE_CATALOG, "settings": {"warehouse": engine}}
        (tmp_path / engine / "catalog" / "catalog.yaml").write_text(yaml.safe_dump(document))
        (tmp_path / engine / "landing" / "events").mkdir(parents=True)
    with ThreadPoolExecutor(max_workers=len(ENGINES)) as pool:
        runs = {e: pool.submit(rerate_after_finalize, tmp_path / e, cluster) for e in ENGINES}
        ours, theirs = (runs[engine].result() for engine in ENGINES)
    november = json.loads(ours["invoices"]["2026-11"])
    kinds = {line["kind"] for invoice in november["invoices"] for line in invoice["lines"]}
    assert kinds & set(kinds_in_group("adjustment")), "October re-rated, its late calls billed"
    assert ["excluded", "sandbox", 2] in ours["counts"]
    assert {day for *_, day in ours["daily"]} >= {"2026-10-01", "2026-11-01"}, "every day rebuilt"
    assert theirs["invoices"] == ours["invoices"], "November's invoice JSON differs on Spark"
    assert theirs["counts"] == ours["counts"] and theirs["fates"] == ours["fates"]
    # the refresh between: Spark rebuilt the fates of the late events' days only, alike
    assert theirs["refreshed"] == ours["refreshed"]
    assert theirs["refresh_read_back"] == ours["late_days_fates"] < len(ours["refreshed"])
    assert theirs["daily"] == ours["daily"], "every day's usage, alike"
    built = sorted(p.name for p in (tmp_path / "spark" / "lake" / "out").iterdir())
    assert built == sorted([*SPARK_BUILT, "fct_daily_meter_usage"]), "every day rebuilt on Spark"
