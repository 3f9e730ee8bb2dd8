"""Ingest at scale, against the bare DuckDB query that does the same dedupe and aggregate.

Run:  .venv/bin/python benchmarks/bench_ingest.py --events 1000000 [--memory-limit 4GB]

It writes N events as JSON lines (10,000 customers, 20 event names, 2% exact duplicates of
earlier events, timestamps over October 2026), then measures, each phase in a fresh process
so that its peak memory is its own:
- ingest: `run_ingest` into a new warehouse (events/s, wall and CPU time, peak RSS);
- fixed overhead: the same on a 1,000-event file;
- bare query: read_json -> row_number() over (customer_id, event_id) -> count per
  customer x event_name x UTC day, on the same file, with no storage.
CPU time is reported beside wall time because the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration.sql import connect  # noqa: E402

NOW = datetime(2026, 11, 6, tzinfo=UTC)
CUSTOMERS = 10_000
EVENT_NAMES = 20
DUPLICATE_EVERY = 50  # 2%


def generate_events(
    path: Path,
    events: int,
    *,
    start_us: int = 1790812800000000,  # 2026-10-01T00:00:00Z
    span_ms: int = 2678400000,  # 31 days
    prefix: str = "evt",
    customers: int = CUSTOMERS,
) -> None:
    """N events as JSON lines, timestamps in [start, start + span); row i repeats an earlier
    row when hash(i) % 50 = 0. Event ids are `prefix`_ and a number."""
    con = connect(":memory:")
    con.execute(
        f"""
        COPY (
            WITH base AS (
                SELECT i, CASE WHEN i > 0 AND hash(i, 'dup') % {DUPLICATE_EVERY} = 0
                    THEN hash(i, 'src') % i ELSE i END AS src
                FROM range({events}) AS t(i)
            )
            SELECT
                '{prefix}_' || lpad(src::VARCHAR, 10, '0') AS event_id,
                'cust_' || (hash(src, 'c') % {customers})::VARCHAR AS customer_id,
                'event.' || (hash(src, 'e') % {EVENT_NAMES})::VARCHAR AS event_name,
                strftime(make_timestamp({start_us}::BIGINT
                    + (hash(src, 't') % {span_ms})::BIGINT * 1000), '%Y-%m-%dT%H:%M:%S.%gZ')
                    AS "timestamp",
                {{'input_tokens': (hash(src, 'i') % 4000)::BIGINT,
                  'output_tokens': (hash(src, 'o') % 1200)::BIGINT,
                  'model': ['large', 'small'][(hash(src, 'm') % 2)::INT + 1],
                  'env': 'prod'}} AS properties,
                'api-gateway' AS source
            FROM base
        ) TO '{path}' (FORMAT JSON)
        """
    )
    con.close()


# the bare query's work after reading: dedupe on (customer_id, event_id), then count per
# customer x event name x UTC day; `events` is a relation of the events file's rows
DEDUPE_AND_COUNT = """
    ranked AS (
        SELECT *, row_number() OVER (
            PARTITION BY customer_id, event_id ORDER BY "timestamp") AS key_rank
        FROM events
    )
    SELECT count(*) FROM (
        SELECT customer_id, event_name, CAST(timezone('UTC', "timestamp") AS DATE), count(*)
        FROM ranked WHERE key_rank = 1 GROUP BY ALL
    )
"""


def _settings(con, memory_limit: str | None, threads: int | None) -> None:
    con.execute("SET enable_progress_bar = false")
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    if threads:
        con.execute(f"SET threads = {int(threads)}")


def _ingest_phase(events_file: str, home: str, memory_limit, threads, out) -> None:
    import pandas  # noqa: F401  pyarrow imports it on first use; a Dagster process has it already

    from orchestration.ingest.ingest import run_ingest

    landing = Path(home) / "landing" / "events"
    landing.mkdir(parents=True)
    (landing / "events.jsonl").symlink_to(events_file)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    con = connect(Path(home) / "warehouse.duckdb")
    _settings(con, memory_limit, threads)
    result = run_ingest(con, landing, NOW)
    con.close()
    out.put(_figures(start_wall, start_cpu, rows=result.lines_read))


def _bare_phase(events_file: str, memory_limit, threads, out) -> None:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    con = connect(":memory:")
    _settings(con, memory_limit, threads)
    rows = con.execute(
        f"WITH events AS (SELECT * FROM read_json('{events_file}', "
        f"format = 'newline_delimited')), {DEDUPE_AND_COUNT}"
    ).fetchone()[0]
    con.close()
    out.put(_figures(start_wall, start_cpu, rows=rows))


def _figures(start_wall: float, start_cpu: float, rows: int) -> dict:
    return {
        "wall_s": time.perf_counter() - start_wall,
        "cpu_s": time.process_time() - start_cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rows": rows,
    }


def run_phase(target, *args) -> dict:
    """One phase in a fresh process: its own peak RSS, no caches from earlier phases."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, out))
    proc.start()
    figures = _figures_or_exit(out, proc)
    proc.join()
    if proc.exitcode:
        raise SystemExit(f"{target.__name__} failed with exit code {proc.exitcode}")
    return figures


def _figures_or_exit(out, proc) -> dict:
    """The phase's figures, or SystemExit once its process has ended without putting them
    (an exception, an out-of-memory kill): a bare `out.get()` would wait for ever."""
    while True:
        try:
            return out.get(timeout=1)
        except queue.Empty:
            if proc.is_alive():
                continue
        try:  # it may have put them just before ending
            return out.get(timeout=1)
        except queue.Empty:
            proc.join()
            raise SystemExit(
                f"{proc.name} ended (exit code {proc.exitcode}) without its figures"
            ) from None


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given")
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit, e.g. 4GB")
    parser.add_argument("--threads", type=int, default=None, help="DuckDB threads")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        return _run(args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


def _run(args, work: Path) -> dict:
    big, small = work / f"events-{args.events}.jsonl", work / "events-1000.jsonl"
    started = time.perf_counter()
    for path, n in ((big, args.events), (small, 1000)):
        if not path.exists():
            generate_events(path, n)
    print(
        f"events file: {args.events:,} events, {big.stat().st_size / 2**20:,.0f} MiB "
        f"(ready in {time.perf_counter() - started:.1f}s)"
    )
    limits = (args.memory_limit, args.threads)
    report = {
        "events": args.events,
        "ingest": run_phase(_ingest_phase, str(big), str(_fresh(work / "home")), *limits),
        "overhead_1000": run_phase(
            _ingest_phase, str(small), str(_fresh(work / "home1k")), *limits
        ),
        "bare_query": run_phase(_bare_phase, str(big), *limits),
    }
    _print(report)
    return report


def _fresh(home: Path) -> Path:
    shutil.rmtree(home, ignore_errors=True)
    return home


def _print(report: dict) -> None:
    ingest, bare, small = report["ingest"], report["bare_query"], report["overhead_1000"]
    print(
        f"ingest:         {report['events'] / ingest['wall_s']:>12,.0f} events/s  "
        f"wall {ingest['wall_s']:.2f}s  cpu {ingest['cpu_s']:.2f}s  "
        f"peak RSS {ingest['peak_rss_mib']:,.0f} MiB"
    )
    print(f"fixed overhead: 1,000 events in {small['wall_s']:.3f}s (cpu {small['cpu_s']:.3f}s)")
    print(
        f"bare query:     wall {bare['wall_s']:.2f}s  cpu {bare['cpu_s']:.2f}s  "
        f"peak RSS {bare['peak_rss_mib']:,.0f} MiB  ({bare['rows']:,} groups)"
    )
    print(
        f"ingest / bare:  wall {ingest['wall_s'] / bare['wall_s']:.2f}x  "
        f"cpu {ingest['cpu_s'] / bare['cpu_s']:.2f}x"
    )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
