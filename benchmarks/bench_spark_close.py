"""The month-end close on Spark against the same close on DuckDB, at each size, in one run.

Run:  .venv/bin/python benchmarks/bench_spark_close.py --events 1000000 10000000

For each size, bench_pipeline's events (10,000 customers, 20 event names, October 2026), split
into `--files` landing files (default 16; Spark's ingest reads one file a task), land
in two fresh workspaces with bench_pipeline's catalog (10,000 subscriptions x 20 charges) that
differ only by `settings.warehouse`; each runs the real `month_end_close` Dagster job in a
fresh process. The Spark workspace talks to a standalone cluster on 127.0.0.1 (a master, a
worker with every core, the Thrift server: tests/spark_cluster.py), started once for the run
and timed apart, through dbt-spark's `thrift` method (meterbook's default). A close's CPU is
its process and its dbt processes, plus, on Spark, every Spark process over the close (the
cluster's JVMs, the ingest's own JVM and Python workers; sampled every half second). Each
close's invoices are compared: the two engines must bill the same amounts.

On 2 cores this favours DuckDB: Spark's JVMs, shuffles and task scheduling cost what a
single small machine cannot buy back (docs/SCALING.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))  # spark_cluster.py

from bench_ingest import NOW, generate_events, run_phase  # noqa: E402
from bench_pipeline import MONTH, _job_phase, catalog_document  # noqa: E402
from spark_cluster import HOST, running_cluster  # noqa: E402

INVOICES = "SELECT count(*), sum(total) FROM marts.fct_invoices WHERE close_month = ?"


def split_events(events_file: Path, files: int) -> list[Path]:
    """The events as `files` files of whole lines, as producers land them (an export per
    hour, the events API's rotated files): Spark's ingest reads one file a task."""
    folder = events_file.with_suffix(f".{files}-files")
    if not folder.is_dir():
        folder.mkdir()
        subprocess.run(["split", "-n", f"l/{files}", "-d", "-a", "3", "--additional-suffix",
                        ".jsonl", str(events_file), str(folder / "events-")], check=True)  # fmt: skip
    return sorted(folder.glob("events-*.jsonl"))


def workspace(work: Path, parts: list[Path], engine: str) -> Path:
    import yaml  # noqa: PLC0415

    home = work / f"{engine}-{parts[0].parent.name}"
    shutil.rmtree(home, ignore_errors=True)
    (home / "catalog").mkdir(parents=True)
    document = {**catalog_document(), "settings": {"warehouse": engine}}
    (home / "catalog" / "catalog.yaml").write_text(yaml.safe_dump(document))
    (home / "landing" / "events").mkdir(parents=True)
    for part in parts:  # hard links: the ingest ignores symlinks leading out of landing/
        os.link(part, home / "landing" / "events" / part.name)
    return home


SPARK_PROCESSES = (b"org.apache.spark", b"pyspark.daemon", b"pyspark.worker")


def spark_cpu() -> dict[int, float]:
    """Own user + system CPU (children apart, so nothing is counted twice) of every Spark
    process: the cluster's JVMs, the ingest's own Spark (its JVM and Python workers)."""
    ticks, found = os.sysconf("SC_CLK_TCK"), {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            command = (entry / "cmdline").read_bytes()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if any(mark in command for mark in SPARK_PROCESSES):
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return found


class SparkCpu:
    """Spark's CPU over a close, sampled every half second: the ingest's Spark lives only
    inside the close's process, whose waited-for children it is not."""

    def __init__(self) -> None:
        self.first, self.last = spark_cpu(), {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self.stop.wait(0.5):
            self.last.update(spark_cpu())

    def __enter__(self) -> SparkCpu:
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stop.set()
        self.thread.join()
        self.last.update(spark_cpu())

    def seconds(self) -> float:
        return sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items())


def invoices(home: Path) -> tuple:
    from orchestration.sql import connect  # noqa: PLC0415

    with connect(home / "warehouse.duckdb", read_only=True) as con:
        count, total = con.execute(INVOICES, [MONTH]).fetchone()
    return int(count), total


def close(home: Path) -> dict:
    with SparkCpu() as spark:
        figures = run_phase(_job_phase, str(home), "month_end_close", MONTH)
    figures["cluster_cpu_s"] = spark.seconds()
    figures["invoices"] = invoices(home)
    return figures


def run(sizes: list[int], work: Path, files: int) -> None:
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
            parts = split_events(events_file, files)
            results = {e: close(workspace(work, parts, e)) for e in ("duckdb", "spark")}
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
    parser.add_argument("--files", type=int, default=16, help="landing files per size")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-spark-close-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(args.events, work, args.files)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
