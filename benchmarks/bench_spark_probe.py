"""Spark against DuckDB on this machine, on the usage stage's work: a probe for
docs/SCALING.md. It is not meterbook's close on Spark (that target is not built yet): it
measures what the engines cost for the same typed landing, partitioning and aggregation.

Run:  .venv/bin/pip install -c constraints.txt -e ".[spark]"      # PySpark; Java 17 needed
      .venv/bin/python benchmarks/bench_spark_probe.py --events 1000000 10000000

For each size, one gzip JSON-lines landing file from bench_ingest.generate_events (10,000
customers, 20 event names, 2% exact duplicates, October 2026); then each engine, each in a
fresh process (its own peak memory, the JVM's included for Spark):
- land:    read the gzip file, type the fields (timestamp; tokens as DECIMAL(38, 12) from the
           properties) and write Parquet partitioned by UTC event day (Spark: an overwrite of
           the partitions written, `partitionOverwriteMode=dynamic`, as dbt-spark's
           insert_overwrite does);
- usage:   from that Parquet, one row per (customer_id, event_id) (the first by timestamp),
           then per customer x event name x day: events, tokens, and the tokens priced at
           0.000001234567 each, the product kept exact and rounded to 12 decimals;
- one day: the same for one day's partition, as a nightly refresh reads it.
Spark runs as a local session (`local[2]`, the machine's 2 cores) with
`spark.sql.decimalOperations.allowPrecisionLoss=false`. The usage rows of the two engines
are compared row by row (an EXCEPT both ways, in DuckDB): they must be identical. Spark's
usage is computed once more with allowPrecisionLoss=true to count the amounts it changes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_ingest import generate_events  # noqa: E402

PRICE = "0.000001234567"
ONE_DAY = "2026-10-15"

# the usage stage's aggregation, the same text for both engines: `events` is the landed
# Parquet (event_id, customer_id, event_name, event_ts, tokens, event_date)
USAGE = f"""
    with ranked as (
        select *, row_number() over (
            partition by customer_id, event_id order by event_ts) as key_rank
        from events
    )
    select
        customer_id, event_name, event_date,
        count(*) as events,
        sum(tokens) as tokens,
        sum(cast(tokens * cast('{PRICE}' as decimal(38, 12)) as decimal(38, 12))) as amount
    from ranked
    where key_rank = 1
    group by customer_id, event_name, event_date
"""


def _duckdb_phase(landing: str, work: str) -> dict:
    import duckdb  # noqa: PLC0415

    con = duckdb.connect()
    con.execute("set timezone = 'UTC'; set memory_limit = '4GB'")
    lake = Path(work) / "duckdb_events"
    started = time.perf_counter()
    con.execute(f"""
        copy (
            select event_id, customer_id, event_name,
                cast("timestamp" as timestamptz) as event_ts,
                cast(properties->>'input_tokens' as decimal(38, 12))
                    + cast(properties->>'output_tokens' as decimal(38, 12)) as tokens,
                cast(timezone('UTC', cast("timestamp" as timestamptz)) as date) as event_date
            from read_json('{landing}', format = 'newline_delimited',
                columns = {{event_id: 'varchar', customer_id: 'varchar', event_name: 'varchar',
                            "timestamp": 'varchar', properties: 'json'}})
        ) to '{lake}' (format parquet, partition_by (event_date), overwrite_or_ignore)
    """)
    land = time.perf_counter() - started
    events = f"read_parquet('{lake}/*/*.parquet', hive_partitioning = true)"
    return {
        "land": land,
        **_duckdb_usage(con, events, Path(work) / "duckdb_usage.parquet", "usage"),
        **_duckdb_usage(
            con,
            f"(select * from {events} where event_date = date '{ONE_DAY}')",
            Path(work) / "duckdb_day.parquet",
            "one_day",
        ),
        "parquet_bytes": sum(p.stat().st_size for p in lake.rglob("*.parquet")),
    }


def _duckdb_usage(con, events: str, out: Path, name: str) -> dict:
    started = time.perf_counter()
    con.execute(f"copy ({USAGE.replace('from events', f'from {events} as events')}) "
                f"to '{out}' (format parquet)")  # fmt: skip
    return {name: time.perf_counter() - started}


def _spark_session(allow_precision_loss: bool = False):
    from pyspark.sql import SparkSession  # noqa: PLC0415

    return (
        SparkSession.builder.master("local[2]")
        .appName("meterbook-probe")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", "4g")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.decimalOperations.allowPrecisionLoss", str(allow_precision_loss).lower())
        .getOrCreate()
    )


def _spark_phase(landing: str, work: str) -> dict:
    started = time.perf_counter()
    spark = _spark_session()
    spark.range(1).count()  # the JVM up and a first job done
    session = time.perf_counter() - started
    lake = str(Path(work) / "spark_events")
    started = time.perf_counter()
    spark.read.schema(
        "event_id string, customer_id string, event_name string, `timestamp` string, "
        "properties map<string, string>"
    ).json(landing).createOrReplaceTempView("landing")
    spark.sql("""
        select event_id, customer_id, event_name,
            cast(`timestamp` as timestamp) as event_ts,
            cast(properties['input_tokens'] as decimal(38, 12))
                + cast(properties['output_tokens'] as decimal(38, 12)) as tokens,
            to_date(cast(`timestamp` as timestamp)) as event_date
        from landing
    """).write.mode("overwrite").partitionBy("event_date").parquet(lake)
    land = time.perf_counter() - started
    spark.read.parquet(lake).createOrReplaceTempView("all_events")
    result = {
        "session": session,
        "land": land,
        **_spark_usage(spark, "all_events", Path(work) / "spark_usage", "usage"),
        **_spark_usage(
            spark,
            f"(select * from all_events where event_date = date '{ONE_DAY}')",
            Path(work) / "spark_day",
            "one_day",
        ),
        "parquet_bytes": sum(p.stat().st_size for p in Path(lake).rglob("*.parquet")),
    }
    spark.conf.set("spark.sql.decimalOperations.allowPrecisionLoss", "true")
    spark.sql(USAGE.replace("from events", "from all_events")).write.mode("overwrite").parquet(
        str(Path(work) / "spark_usage_lossy")
    )
    result["jvm"] = _jvm_figures(spark)
    spark.stop()
    return result


def _jvm_figures(spark) -> dict:
    """The JVM's CPU seconds and peak RSS, from /proc: it is the session's child, and not
    waited for before this process exits, so the rusage of children would not count it."""
    pid = spark.sparkContext._gateway.proc.pid  # spark-submit execs the JVM: the same pid
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return {"cpu": (int(fields[11]) + int(fields[12])) / ticks, "peak_gib": peak_kib / 1024**2}


def _spark_usage(spark, events: str, out: Path, name: str) -> dict:
    started = time.perf_counter()
    query = USAGE.replace("from events", f"from {events} as events")
    spark.sql(query).write.mode("overwrite").parquet(str(out))
    return {name: time.perf_counter() - started}


def _compare(work: Path) -> dict:
    import duckdb  # noqa: PLC0415

    con = duckdb.connect()

    def rows(name: str) -> str:
        found = work / name
        pattern = f"{found}/*.parquet" if found.is_dir() else str(found)
        return f"(select * from read_parquet('{pattern}'))"

    def differing(a: str, b: str) -> int:
        query = f"select count(*) from ({rows(a)} except {rows(b)})"
        return (
            con.execute(query).fetchone()[0]
            + con.execute(f"select count(*) from ({rows(b)} except {rows(a)})").fetchone()[0]
        )

    totals = con.execute(
        f"select count(*), sum(events), sum(tokens)::varchar, sum(amount)::varchar "
        f"from {rows('duckdb_usage.parquet')}"
    ).fetchone()
    return {
        "usage_rows": totals[0],
        "events_counted": totals[1],
        "tokens": totals[2],
        "amount": totals[3],
        "rows_differing": differing("duckdb_usage.parquet", "spark_usage"),
        "day_rows_differing": differing("duckdb_day.parquet", "spark_day"),
        "lossy_rows_differing": differing("duckdb_usage.parquet", "spark_usage_lossy"),
    }


def _in_fresh_process(phase: str, landing: Path, work: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--phase", phase, str(landing), str(work)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"{phase} failed:\n{done.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    figures["wall"] = time.perf_counter() - started
    figures["cpu"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    figures["peak_gib"] = after.ru_maxrss / 1024 / 1024  # the largest process so far
    jvm = figures.pop("jvm", None)
    if jvm:  # Spark: the Python driver's figures and the JVM's
        figures["cpu"] += jvm["cpu"]
        figures["peak_gib"] = max(figures["peak_gib"], jvm["peak_gib"])
    return figures


def run(events: int, work: Path) -> dict:
    plain, landing = work / "events.jsonl", work / "events.jsonl.gz"
    generate_events(plain, events)
    with open(plain, "rb") as source, gzip.open(landing, "wb", compresslevel=1) as target:
        shutil.copyfileobj(source, target, 1 << 20)
    plain.unlink()
    duck = _in_fresh_process("duckdb", landing, work)
    spark = _in_fresh_process("spark", landing, work)
    return {"events": events, "gzip_bytes": landing.stat().st_size, "duckdb": duck,
            "spark": spark, **_compare(work)}  # fmt: skip


def report(r: dict) -> None:
    n = r["events"]
    print(f"\n{n:,} events ({r['gzip_bytes'] / n:.1f} gzip bytes each), 2 cores")
    print(f"{'':10} {'session':>8} {'land':>8} {'usage':>8} {'one day':>8} "
          f"{'process':>8} {'cpu':>8} {'peak':>9} {'parquet B/event':>16}")  # fmt: skip
    for name in ("duckdb", "spark"):
        f = r[name]
        print(f"{name:10} {f.get('session', 0):8.1f} {f['land']:8.1f} {f['usage']:8.1f} "
              f"{f['one_day']:8.1f} {f['wall']:8.1f} {f['cpu']:8.1f} "
              f"{f['peak_gib']:7.2f}Gi {f['parquet_bytes'] / n:16.1f}")  # fmt: skip
    print(
        f"usage rows {r['usage_rows']:,}, events counted {r['events_counted']:,}, "
        f"tokens {r['tokens']}, amount {r['amount']}"
    )
    print(
        f"rows differing DuckDB vs Spark: {r['rows_differing']} (all days), "
        f"{r['day_rows_differing']} (one day); with allowPrecisionLoss=true: "
        f"{r['lossy_rows_differing']}"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--phase":
        phase, landing, work = sys.argv[2:5]
        figures = (_duckdb_phase if phase == "duckdb" else _spark_phase)(landing, work)
        print(json.dumps(figures))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--keep", action="store_true", help="keep the work folders")
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    for events in args.events:
        work = Path(tempfile.mkdtemp(prefix=f"spark-probe-{events}-"))
        try:
            report(run(events, work))
        finally:
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
