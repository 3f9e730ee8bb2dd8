"""dbt on a standalone Spark cluster through Thrift, as dbt-spark's `thrift` method runs it:
the cost of the cluster and of dbt on it, for docs/SCALING.md. Not meterbook's own models
(they are DuckDB-only yet): two models of the probe's work (bench_spark_probe.py).

Run:  .venv/bin/pip install -c constraints.txt -e ".[spark]"      # PySpark; Java 17 needed
      .venv/bin/python benchmarks/bench_spark_thrift.py --events 1000000

It lands N generated events as typed Parquet (DuckDB, as the probe's land phase), starts a
Spark master, a worker (2 cores) and the Thrift server on 127.0.0.1 (tests/spark_cluster.py), and
times, in a dbt project of its own:
- `dbt build` the first time: `events_by_day` (incremental, `insert_overwrite` partitioned by
  event day, Parquet) and `daily_usage` (the probe's dedupe and exact aggregation);
- the same again (every partition overwritten);
- a one-day refresh: `events_by_day` for one day only (`--vars`), its partition overwritten.
The daily usage must equal DuckDB's row by row, and the one-day refresh must leave the other
days' rows as they were.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))  # spark_cluster.py

from bench_spark_probe import ONE_DAY, USAGE, _duckdb_phase  # noqa: E402
from spark_cluster import HOST, running_cluster  # noqa: E402

PROJECT = """
name: probe
version: "1.0"
config-version: 2
profile: probe
models:
  probe:
    +file_format: parquet
"""

PROFILES = """
probe:
  target: thrift
  outputs:
    thrift:
      type: spark
      method: thrift
      host: {host}
      port: {port}
      schema: probe
      threads: 2
      connect_retries: 3
      connect_timeout: 10
"""

# the landed events, one event day a partition; a day's refresh overwrites that day only
EVENTS_BY_DAY = """
{{{{ config(materialized='incremental', incremental_strategy='insert_overwrite',
            partition_by=['event_date']) }}}}
select event_id, customer_id, event_name, event_ts, tokens, event_date
from parquet.`{lake}`
{{% if var('day', '') %}}where event_date = date '{{{{ var("day") }}}}'{{% endif %}}
"""

DAILY_USAGE = "{{ config(materialized='table') }}\n" + USAGE.replace(
    "from events", "from {{ ref('events_by_day') }}"
)


def write_project(folder: Path, lake: Path, port: int) -> None:
    (folder / "models").mkdir(parents=True)
    (folder / "dbt_project.yml").write_text(PROJECT)
    (folder / "profiles.yml").write_text(PROFILES.format(host=HOST, port=port))
    (folder / "models" / "events_by_day.sql").write_text(EVENTS_BY_DAY.format(lake=lake))
    (folder / "models" / "daily_usage.sql").write_text(DAILY_USAGE)


def dbt(folder: Path, *args: str) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), *args, "--project-dir", str(folder),
         "--profiles-dir", str(folder)],
        capture_output=True, text=True, check=False, cwd=folder,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"dbt {' '.join(args)} failed:\n{done.stdout[-4000:]}")
    return time.perf_counter() - started


def compare(work: Path, warehouse: Path) -> dict:
    import duckdb  # noqa: PLC0415

    con = duckdb.connect()
    ours = f"read_parquet('{work / 'duckdb_usage.parquet'}')"
    theirs = f"read_parquet('{warehouse / 'probe.db' / 'daily_usage'}/*.parquet')"

    def count(query: str) -> int:
        return con.execute(f"select count(*) from ({query})").fetchone()[0]

    return {
        "rows": count(f"select * from {ours}"),
        "differing": count(f"select * from {ours} except select * from {theirs}")
        + count(f"select * from {theirs} except select * from {ours}"),
    }


def run(events: int, work: Path) -> dict:
    from bench_ingest import generate_events  # noqa: PLC0415

    landing = work / "events.jsonl"
    generate_events(landing, events)
    figures = {"events": events, "duckdb": _duckdb_phase(str(landing), str(work))}
    landing.unlink()
    lake, project = work / "duckdb_events", work / "project"
    with running_cluster(work) as cluster:
        figures["cluster"] = cluster.started_seconds
        write_project(project, lake, cluster.thrift_port)
        figures["first_build"] = dbt(project, "build")
        figures["second_build"] = dbt(project, "build")
        figures["compare"] = compare(work, work / "spark-warehouse")
        figures["one_day"] = dbt(project, "run", "--select", "events_by_day",
                                 "--vars", f"{{day: '{ONE_DAY}'}}")  # fmt: skip
        figures["after_one_day"] = dbt(project, "build", "--select", "daily_usage")
        figures["compare_after_one_day"] = compare(work, work / "spark-warehouse")
    return figures


def report(f: dict) -> None:
    print(f"\n{f['events']:,} events; dbt-spark through Thrift on a 2-core standalone cluster")
    print(f"master up {f['cluster']['master']:.1f} s, Thrift server up "
          f"{f['cluster']['thrift']:.1f} s after the start")  # fmt: skip
    print(f"dbt build, first: {f['first_build']:.1f} s; again (every day overwritten): "
          f"{f['second_build']:.1f} s")  # fmt: skip
    print(f"one day's partition overwritten: {f['one_day']:.1f} s; daily usage rebuilt "
          f"after it: {f['after_one_day']:.1f} s")  # fmt: skip
    d = f["duckdb"]
    print(f"DuckDB, same work: land {d['land']:.1f} s, usage {d['usage']:.1f} s")
    print(
        f"daily usage rows {f['compare']['rows']:,}: {f['compare']['differing']} differ from "
        f"DuckDB's; after the one-day refresh: {f['compare_after_one_day']['differing']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    work = Path(tempfile.mkdtemp(prefix="spark-thrift-"))
    try:
        report(run(args.events, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
