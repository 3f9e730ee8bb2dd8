"""The month-end close on Spark against the same close on DuckDB, at each size, in one run.

Run:  .venv/bin/python benchmarks/bench_spark_close.py --events 1000000 10000000

For each size, bench_pipeline's events (10,000 customers, 20 event names, October 2026) land
in two fresh workspaces with bench_pipeline's catalog (10,000 subscriptions x 20 charges) that
differ only by `settings.warehouse`; each runs the real `month_end_close` Dagster job in a
fresh process. The Spark workspace talks to a standalone cluster on 127.0.0.1 (a master, a
worker with every core, the Thrift server: tests/spark_cluster.py), started once for the run
and timed apart, through dbt-spark's `thrift` method (meterbook's default). A close's CPU is
its process and its dbt processes, plus, on Spark, the cluster's JVMs over the close. Each
close's invoices are compared: the two engines must bill the same amounts.

On 2 cores this favours DuckDB: Spark's JVMs, shuffles and task scheduling cost what a
single small machine cannot buy back (docs/SCALING.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))  # spark_cluster.py

from bench_ingest import NOW, generate_events, run_phase  # noqa: E402
from bench_pipeline import MONTH, _job_phase, catalog_document  # noqa: E402
from spark_cluster import HOST, running_cluster  # noqa: E402

INVOICES = "SELECT count(*), sum(total) FROM marts.fct_invoices WHERE close_month = ?"


def workspace(work: Path, events_file: Path, engine: str) -> Path:
    import yaml  # noqa: PLC0415

    home = work / f"{engine}-{events_file.stem}"
    shutil.rmtree(home, ignore_errors=True)
    (home / "catalog").mkdir(parents=True)
    document = {**catalog_document(), "settings": {"warehouse": engine}}
    (home / "catalog" / "catalog.yaml").write_text(yaml.safe_dump(document))
    (home / "landing" / "events").mkdir(parents=True)
    os.link(events_file, home / "landing" / "events" / "events.jsonl")  # the ingest skips links
    return home


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of processes `pids` and their waited-for children so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / ticks


def java_pids() -> list[int]:
    """The JVMs of the cluster (master, worker, Thrift server, executors): this run's only."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            command = stat.read_bytes().split(b"\0")
        except OSError:
            continue
        if command and command[0].endswith(b"java") and b"org.apache.spark" in b" ".join(command):
            pids.append(int(stat.parent.name))
    return pids


def invoices(home: Path) -> tuple:
    from orchestration.sql import connect  # noqa: PLC0415

    with connect(home / "warehouse.duckdb", read_only=True) as con:
        count, total = con.execute(INVOICES, [MONTH]).fetchone()
    return int(count), total


def close(home: Path) -> dict:
    jvms = java_pids()
    before = cpu_seconds(jvms)
    figures = run_phase(_job_phase, str(home), "month_end_close", MONTH)
    figures["cluster_cpu_s"] = (
        cpu_seconds([p for p in jvms if Path(f"/proc/{p}").exists()]) - before
    )
    figures["invoices"] = invoices(home)
    return figures


def run(sizes: list[int], work: Path) -> None:
    os.environ["METERBOOK_NOW"] = NOW.isoformat()
    started = time.perf_counter()
    with running_cluster(work / "cluster", cores=os.cpu_count() or 2, memory="6g") as cluster:
        print(f"cluster and Thrift server up: {time.perf_counter() - started:.1f} s; DuckDB "
              f"memory_limit {os.environ.get('METERBOOK_MEMORY_LIMIT', '4GB (the default)')}")  # fmt: skip
        os.environ.update(METERBOOK_SPARK_METHOD="thrift", METERBOOK_SPARK_HOST=HOST)
        os.environ["METERBOOK_SPARK_PORT"] = str(cluster.thrift_port)
        print(
            f"{'events':>11} {'engine':<7} {'close s':>8} {'CPU s':>7} {'peak GiB':>8}  steps (s)"
        )
        for size in sizes:
            events_file = work / f"events-{size}.jsonl"
            if not events_file.exists():
                generate_events(events_file, size)
            results = {e: close(workspace(work, events_file, e)) for e in ("duckdb", "spark")}
            for engine, r in results.items():
                steps = {k: v for k, v in r["steps"].items() if v >= 1}
                print(
                    f"{size:>11,} {engine:<7} {r['wall_s']:>8.1f} "
                    f"{r['cpu_s'] + r['cluster_cpu_s']:>7.1f} {r['peak_rss_mib'] / 1024:>8.2f}  "
                    f"{steps}"
                )
            same = results["duckdb"]["invoices"] == results["spark"]["invoices"]
            print(f"{'':>11} invoices {results['spark']['invoices']}: "
                  f"{'the same on both engines' if same else 'DIFFERENT'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-spark-close-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(args.events, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
