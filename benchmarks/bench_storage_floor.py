"""What storing the events costs in DuckDB, next to reading them: the floor under any ingest
that copies every event into the warehouse.

Run:  .venv/bin/python benchmarks/bench_storage_floor.py --events 10000000

On the same JSON-lines file as bench_ingest (10,000 customers, 20 event names, 2% duplicates)
it prints, each in a fresh DuckDB database file: read_json of the six event fields alone, then
CREATE TABLE of some or all of them, then COPY of all of them to Parquet, and the bare query
of bench_ingest (read, dedupe, aggregate) for scale. No meterbook code runs: these are
DuckDB's own costs, the least that an ingest storing rows can spend.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_ingest import generate_events  # noqa: E402

from orchestration.sql import connect, quote_literal  # noqa: E402

COLUMNS = (
    "columns = {event_id: 'VARCHAR', customer_id: 'VARCHAR', event_name: 'VARCHAR', "
    "timestamp: 'VARCHAR', properties: 'JSON', source: 'VARCHAR'}"
)


def cases(events_file: Path, out_dir: Path) -> list[tuple[str, str]]:
    src = f"read_json({quote_literal(str(events_file))}, format = 'newline_delimited', {COLUMNS})"
    parquet = quote_literal(str(out_dir / "events.parquet"))
    auto = f"read_json({quote_literal(str(events_file))}, format = 'newline_delimited')"
    lengths = " + ".join(
        f"sum(length({c}))"
        for c in ("event_id", "customer_id", "event_name", "timestamp", "properties", "source")
    )
    return [
        ("read all six fields (no storage)", f"SELECT count(*), {lengths} FROM {src}"),
        (
            "store the three ids",
            f"CREATE TABLE t AS SELECT event_id, customer_id, event_name FROM {src}",
        ),
        ("store properties", f"CREATE TABLE t AS SELECT properties FROM {src}"),
        ("store all six fields", f"CREATE TABLE t AS SELECT * FROM {src}"),
        (
            "COPY all six to Parquet (zstd)",
            f"COPY (SELECT * FROM {src}) TO {parquet} (FORMAT parquet, COMPRESSION zstd)",
        ),
        # the same query as bench_ingest's bare phase
        (
            "bare query (read, dedupe, aggregate)",
            f"""
            SELECT count(*) FROM (
                SELECT customer_id, event_name, CAST(timezone('UTC', "timestamp") AS DATE), count(*)
                FROM (SELECT *, row_number() OVER (
                        PARTITION BY customer_id, event_id ORDER BY "timestamp") AS rn
                      FROM {auto})
                WHERE rn = 1 GROUP BY ALL)""",
        ),
    ]


def connect_limited(db: Path | str, memory_limit: str):
    con = connect(db)
    con.execute(f"SET memory_limit = {quote_literal(memory_limit)}")
    con.execute("SET enable_progress_bar = false")
    return con


def events_from_args(description: str, prefix: str) -> tuple[argparse.Namespace, Path, Path]:
    """(args, work folder, events file) from --events, --workdir, --memory-limit; the
    events file is generated once per workdir and size."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--memory-limit", default="4GB")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    events_file = work / f"events-{args.events}.jsonl"
    if not events_file.exists():
        generate_events(events_file, args.events)
    print(f"{args.events:,} events, {events_file.stat().st_size / 2**20:,.0f} MiB of JSON lines")
    return args, work, events_file


def measure(label: str, sql: str, db: Path, memory_limit: str) -> None:
    db.unlink(missing_ok=True)
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    con = connect_limited(db, memory_limit)
    con.execute(sql)
    con.execute("CHECKPOINT")
    con.close()
    wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
    print(f"{label:<40}wall {wall:7.2f}s  cpu {cpu:7.2f}s", flush=True)


def main() -> None:
    args, work, events_file = events_from_args(__doc__.splitlines()[0], "bench-floor-")
    for label, sql in cases(events_file, work):
        measure(label, sql, work / "floor.duckdb", args.memory_limit)
    (work / "floor.duckdb").unlink(missing_ok=True)
    (work / "events.parquet").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
