"""The usage models on Spark, when the workspace's `settings.warehouse` is `spark` (issue 29).

The hand-off design (docs/SCALING.md): Spark builds the models that read every event, the
fates (`int_events_fated`), the daily usage (`fct_daily_meter_usage`) and the metering
windows' quantities (`int_meter_quantities_windowed`), from the same model files as DuckDB;
DuckDB, the warehouse of record, keeps the rest (billing, the fates' marts, entitlements,
revenue), which reads per-customer results, not events. A dbt step that selects one of those
models:

1. writes their inputs from DuckDB as Parquet into the lake folder (warehouse/lake.py), but
   the raw events, which Spark's own ingest wrote there (ingest/spark_read.py);
2. runs dbt on the `spark` target (profiles.yml: a Thrift server, or `session`, PySpark in
   this process): its run-start hook attaches the inputs, its run-end hook writes the models
   back as Parquet (macros/spark_handoff.sql);
3. reads them into DuckDB in one transaction (every fate, the refreshed days of daily
   usage, the close month's quantities);
then the step's DuckDB build excludes them. Spark keeps its fates between steps and rebuilds
only the event days whose events DuckDB's fates do not have yet (insert_overwrite of those
partitions; macros/usage_incremental.sql), and DuckDB replaces those days; every other model
is dropped and built in full from what it is handed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import duckdb

from orchestration.catalog import Catalog
from orchestration.defs.dbt.runner import (
    PROJECT_TARGET,
    DbtRunError,
    environment,
    failure_message,
    keep_partial_parse,
    partition_env,
    project_args,
    scratch_target,
    seed_partial_parse,
)
from orchestration.sql import connect
from orchestration.warehouse.lake import (
    LakeTable,
    claim_lake,
    output_table,
    parquet_source,
    read_back,
    spark_relation,
    write_inputs,
)
from orchestration.warehouse.models import declared_types, model_exists, relation
from orchestration.workspace import Workspace

FATES = "int_events_fated"
DAILY = "fct_daily_meter_usage"
WINDOWED = "int_meter_quantities_windowed"
SPARK_MODELS = (FATES, DAILY, WINDOWED)
SCHEMA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

# what the models assume of Spark (docs/SCALING.md): exact decimal products, UTC; and, for a
# session started here, a driver on this machine only
SPARK_CONF = {
    "spark.sql.decimalOperations.allowPrecisionLoss": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",  # its progress bars would garble the terminal
    "spark.sql.shuffle.partitions": "2",
    # the meters' Spark SQL is long (each property read is written out, lambdas and all): at
    # the default 1 GiB the metering tests' window quantities ran the driver out of heap
    # while planning (java.lang.OutOfMemoryError, 2026-12-07)
    "spark.driver.memory": "2g",
}


def on_spark(models: Iterable[str]) -> list[str]:
    """Of `models`, those Spark builds, in build order."""
    chosen = set(models)
    return [model for model in SPARK_MODELS if model in chosen]


def spark_schema(ws: Workspace) -> str:
    """The prefix of the workspace's schemas on Spark (`<prefix>_staging`, ...): the
    METERBOOK_SPARK_SCHEMA the environment sets, else one of its own, from the workspace's
    folder, so that two workspaces building on one Spark server never replace each other's
    tables (a new prefix costs no more than a new workspace: dbt parses each one's anew)."""
    chosen = os.environ.get("METERBOOK_SPARK_SCHEMA")
    if chosen is None:
        digest = hashlib.sha256(str(ws.home.resolve()).encode()).hexdigest()
        return f"meterbook_{digest[:10]}"
    if not SCHEMA_NAME.fullmatch(chosen):
        raise ValueError(
            f"METERBOOK_SPARK_SCHEMA={chosen!r}: a Spark schema prefix is letters, digits and "
            "underscores, starting with a letter"
        )
    return chosen


def replaced_rows(model: str, partition: Mapping[str, str]) -> str | None:
    """Which rows of DuckDB's table Spark's build replaces (None: all). The values are checked
    by partition_env before they get here. The fates: see fates_replaced."""
    if model == DAILY:
        return (
            f"usage_date >= DATE '{partition['METERBOOK_MIN_DATE']}' "
            f"AND usage_date < DATE '{partition['METERBOOK_MAX_DATE']}'"
        )
    return None  # the windowed quantities: the close month's table


def fates_to_rebuild(con) -> dict | None:
    """What Spark's fates build overwrites (macros/usage_incremental.sql: fates_spark_plan):
    the UTC days of the raw events DuckDB's fates do not have yet (None for events without a
    timestamp), and the read_seq they come after; None when DuckDB holds no fates (every
    event is fated). Decided by DuckDB's fates, not Spark's: should an earlier read-back have
    failed, the days Spark rebuilt then are rebuilt and read back again."""
    if not model_exists(con, FATES):
        return None
    (after,) = con.execute(f"SELECT max(read_seq) FROM {relation(FATES)}").fetchone()
    if after is None:
        return None
    days = con.execute(
        "SELECT DISTINCT CAST(timezone('UTC', event_ts) AS DATE) FROM meterbook_raw.raw_events "
        "WHERE read_seq > ? ORDER BY 1 NULLS LAST",
        [after],
    ).fetchall()
    return {"after": after, "days": [day.isoformat() if day else None for (day,) in days]}


def fates_replaced(table: LakeTable) -> tuple[str | None, bool]:
    """(the rows of DuckDB's fates that Spark's rows replace, whether there are any): all
    after a full build (its rows have fated_after 0), else the days it rebuilt."""
    source = parquet_source(table)
    if source is None:
        return "false", False
    with duckdb.connect() as con:
        full, days, rows = con.execute(
            f"SELECT min(fated_after) = 0, list(DISTINCT event_date), count(*) FROM {source}"
        ).fetchone()
    if not rows:
        return "false", False
    if full:
        return None, True
    dated = ", ".join(f"DATE '{day.isoformat()}'" for day in days if day is not None)
    on_days = [f"event_date IN ({dated})"] if dated else []
    on_days += ["event_date IS NULL"] if None in days else []
    return " OR ".join(on_days), True


def build_on_spark(
    ws: Workspace,
    catalog: Catalog,
    models: list[str],
    partition: Mapping[str, str | None] | None,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, int]:
    """Build `models` (of SPARK_MODELS) on Spark for `partition` and put them in the DuckDB
    warehouse; returns the rows read back per model. The caller holds the warehouse."""
    env = partition_env(partition)
    lake = claim_lake(ws.lake_dir, ws.home)
    handed = [] if FATES in models else [FATES]  # a later step reads the fates DuckDB holds
    with connect(ws.warehouse_path) as con:
        inputs = write_inputs(con, catalog, lake, tuple(handed))
        fates = fates_to_rebuild(con) if FATES in models else _fates_held(con)
    outputs = [output_table(lake, model) for model in models]
    prefix = spark_schema(ws)
    handoff = _handoff(inputs, outputs, prefix, fates)
    # in full but the fates (their config says full_refresh false on Spark)
    args = ["run", "--full-refresh", "--select", " ".join(f"+{model}" for model in models)]
    if handed:
        args += ["--exclude", *handed]
    own = [table.relation for table in inputs if table.committed]  # what Spark's ingest wrote
    log(
        f"Spark builds {', '.join(models)} from {len(inputs)} tables handed over in {lake}"
        + (f" ({', '.join(own)}: Spark's own ingest's)" if own else "")
    )
    env = {**env, "METERBOOK_SPARK_SCHEMA": prefix, "METERBOOK_SPARK_HANDOFF": json.dumps(handoff)}
    _run_spark_dbt(ws, args, env)
    rows = _read_back_all(ws, models, outputs, env)
    log("read back from Spark: " + ", ".join(f"{m} {n} rows" for m, n in rows.items()))
    return rows


def _fates_held(con) -> dict:
    """What DuckDB's fates hold, for a step that only reads them: Spark keeps its own when
    they hold as much (macros/spark_handoff.sql: mb_spark_holds)."""
    rows, last = con.execute(f"SELECT count(*), max(read_seq) FROM {relation(FATES)}").fetchone()
    return {"rows": rows, "max_read_seq": -1 if last is None else last}


def _handoff(inputs: list[LakeTable], outputs: list[LakeTable], prefix: str, fates) -> dict:
    """What the run's hooks do (macros/spark_handoff.sql). Spark keeps its fates between
    steps (built by day) and a step that only reads them keeps them too when they hold what
    DuckDB's do; every other model is dropped and built in full from what is handed."""
    fates_relation = relation(FATES)
    attach = [table.as_json(prefix) for table in inputs]
    exports = [table.as_json(prefix) for table in outputs]
    handoff = {"attach": attach, "export": exports}
    if any(table.relation == fates_relation for table in outputs):
        handoff["fates"] = fates
        handoff["drop_unless_partitioned"] = [spark_relation(fates_relation, prefix)]
    for table, entry in zip(inputs, attach, strict=True):
        if table.relation == fates_relation:
            entry["unless_same"] = fates
    for table, entry in zip(outputs, exports, strict=True):
        if table.relation == fates_relation:
            entry["rebuilt_only"] = "fated_in"  # the rows of this run's days, not every day
    handoff["drop"] = [
        spark_relation(t.relation, prefix) for t in outputs if t.relation != fates_relation
    ]
    return handoff


def _read_back_all(
    ws: Workspace, models: list[str], outputs: list[LakeTable], env: Mapping[str, str]
) -> dict[str, int]:
    rows = {}
    with connect(ws.warehouse_path) as con:
        con.begin()  # all of Spark's models, or (on any error) none of them
        for model, table in zip(models, outputs, strict=True):
            if model == FATES:
                where, any_rows = fates_replaced(table)
                rows[model] = read_back(con, table, where, declared_types(model)) if any_rows else 0
            else:
                rows[model] = read_back(
                    con, table, replaced_rows(model, env), declared_types(model)
                )
        con.commit()
    return rows


def _run_spark_dbt(ws: Workspace, args: list[str], env: Mapping[str, str]) -> None:
    """dbt on the `spark` target, in this process (a `session` Spark is this process's)."""
    from dbt.cli.main import dbtRunner  # noqa: PLC0415 (slow import, only when running)

    if os.environ.get("METERBOOK_SPARK_METHOD") == "session":
        spark_session(ws.home / "spark" / "warehouse")
    target = scratch_target("run_dbt-spark-", PROJECT_TARGET)
    cache = ws.home / "dbt" / "spark" / "partial_parse.msgpack"  # its own profile: its own parse
    with environment(env):
        seed_partial_parse(cache, target)
        result = dbtRunner().invoke([*args, "--target", "spark", *project_args(target)])
    if not result.success:
        raise DbtRunError(f"dbt on Spark failed (its logs: {target}): {failure_message(result)}")
    keep_partial_parse(target, cache)
    shutil.rmtree(target, ignore_errors=True)


# what a session of a server already running can be given (the SQL settings): see SPARK_CONF
RUNTIME_CONF = (
    "spark.sql.decimalOperations.allowPrecisionLoss",
    "spark.sql.session.timeZone",
    "spark.sql.shuffle.partitions",
)


def ingest_session(warehouse_dir: Path) -> tuple[object, str | None]:
    """The Spark an ingest reads the landing files on, and the address of its Spark Connect
    server: the one METERBOOK_SPARK_REMOTE names (`sc://host:port`: no JVM in this process,
    the tasks on the server's Python workers, which stay warm between runs), else None and
    spark_session's."""
    remote = os.environ.get("METERBOOK_SPARK_REMOTE")
    if not remote:
        return spark_session(warehouse_dir), None
    from pyspark.sql import SparkSession  # noqa: PLC0415 (the `spark` extra)

    session = SparkSession.builder.remote(remote).getOrCreate()
    for key in RUNTIME_CONF:
        session.conf.set(key, SPARK_CONF[key])
    return session, remote


def spark_session(warehouse_dir: Path, master: str | None = None):
    """The PySpark session dbt's `session` method finds (it calls getOrCreate), started here
    with what the models need, its tables under `warehouse_dir`; the master is `master`, else
    METERBOOK_SPARK_MASTER, else local[*]."""
    from pyspark.sql import SparkSession  # noqa: PLC0415 (the `spark` extra)

    master = master or os.environ.get("METERBOOK_SPARK_MASTER", "local[*]")
    builder = SparkSession.builder.master(master).appName("meterbook")
    # the ingest's tasks run this package's readers: their Python is this one (its packages),
    # unless PYSPARK_PYTHON names another (a cluster's own, with meterbook installed); PySpark
    # reads the variable, not the spark.pyspark.python setting, when it starts the JVM here
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    conf = {**SPARK_CONF, "spark.sql.warehouse.dir": str(warehouse_dir)}
    for key, value in conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
