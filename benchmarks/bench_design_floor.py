"""What two narrower storage designs would cost at best, next to the bare query: is 1.5x in reach?

Run:  .venv/bin/python benchmarks/bench_design_floor.py --events 10000000

Today's ingest stores every field of every event, `properties` included, and that alone
costs more than the bare query (bench_storage_floor.py). Two designs that store less, each
measured here as the least DuckDB itself spends on it (no meterbook code, no dbt, no Dagster,
no per-line checks), on the same JSON-lines file as bench_pipeline:

- "read back": the ingest keeps a narrow index per event (64-bit key hash, customer, event
  name, instant; the line is the row's position) and the close reads `properties` back from
  the landing file, joined by position;
- "values at ingest": the ingest also stores each meter's value, so the close only aggregates.
  A catalog change to a meter would need the landing files read again (not measured here).

Each design runs in its own DuckDB file: ingest (read every field, store the index), key
ranking (the repeated keys' ranks, as keys.py keeps them, but on the 64-bit key hash alone:
keys.py also compares the keys of the candidates, so that a collision cannot rank wrongly), close (daily value per customer x
meter x day). The benchmark's meters count the odd event names and sum input + output tokens
of the even ones; every design's daily rows must add up to the bare query's, or the script
stops. Also printed: sha256 of the file (the ingest hashes every landing file before reading
it), the bare query (read_json -> row_number() dedupe -> the same per-meter aggregate), and,
for scale, meterbook's own parse of the file (record splitting and the SPEC 2.3 checks of
parse_records.sql), which stores nothing: what either design would spend reading the file
if it kept today's parse instead of DuckDB's reader.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_storage_floor import connect_limited, events_from_args  # noqa: E402

from orchestration.ingest import parse  # noqa: E402
from orchestration.ingest.discovery import LandingFile, sha256_file  # noqa: E402
from orchestration.ingest.readers import read_batches  # noqa: E402
from orchestration.sql import quote_literal  # noqa: E402

SIX_FIELDS = (
    "columns = {event_id: 'VARCHAR', customer_id: 'VARCHAR', event_name: 'VARCHAR', "
    "timestamp: 'VARCHAR', properties: 'JSON', source: 'VARCHAR'}"
)
# the benchmark catalog's meters (bench_pipeline.catalog_document): odd event names count,
# even ones sum input + output tokens
METER_VALUE = (
    "CASE WHEN CAST(split_part(event_name, '.', 2) AS INT) % 2 = 1 THEN 1 ELSE {tokens} END"
)
TOKENS_JSON = (
    "CAST(properties->>'$.input_tokens' AS BIGINT) + CAST(properties->>'$.output_tokens' AS BIGINT)"
)
RANK_REPEATED = """
    CREATE TABLE repeated AS
    SELECT rowid AS line_no, row_number() OVER (PARTITION BY key_hash ORDER BY rowid) AS key_rank
    FROM idx WHERE key_hash IN (SELECT key_hash FROM idx GROUP BY key_hash HAVING count(*) > 1)
"""


def _index_sql(src: str, extra: str = "") -> str:
    # json_valid stands for the ingest's look at every event's properties (bad_property)
    return f"""
        CREATE TABLE idx AS
        SELECT hash(customer_id, event_id) AS key_hash, customer_id, event_name,
            CAST("timestamp" AS TIMESTAMPTZ) AS event_ts, json_valid(properties) AS props_ok{extra}
        FROM {src}
    """


def _daily_sql(events: str, tokens: str) -> str:
    return f"""
        CREATE TABLE daily AS
        SELECT customer_id, event_name, CAST(timezone('UTC', event_ts) AS DATE) AS day,
            sum({METER_VALUE.format(tokens=tokens)}) AS v
        FROM {events} LEFT JOIN repeated USING (line_no)
        WHERE coalesce(key_rank, 1) = 1
        GROUP BY ALL
    """


def designs(events_file: Path) -> dict[str, list[tuple[str, str]]]:
    path = quote_literal(str(events_file))
    src = f"read_json({path}, format = 'newline_delimited', {SIX_FIELDS})"
    tokens_only = (
        f"read_json({path}, format = 'newline_delimited', "
        "columns = {properties: 'STRUCT(input_tokens BIGINT, output_tokens BIGINT)'})"
    )
    read_back = (
        "(SELECT rowid AS line_no, * FROM idx) POSITIONAL JOIN "
        f"(SELECT properties.input_tokens + properties.output_tokens AS tokens FROM {tokens_only})"
    )
    return {
        "read back": [
            ("ingest: store the narrow index", _index_sql(src)),
            ("ingest: rank repeated keys", RANK_REPEATED),
            ("close: read properties back", _daily_sql(read_back, "tokens")),
        ],
        "values at ingest": [
            ("ingest: store index + values", _index_sql(src, f", {TOKENS_JSON} AS tokens")),
            ("ingest: rank repeated keys", RANK_REPEATED),
            ("close: aggregate", _daily_sql("(SELECT rowid AS line_no, * FROM idx)", "tokens")),
        ],
    }


def bare_query(events_file: Path) -> str:
    auto = f"read_json({quote_literal(str(events_file))}, format = 'newline_delimited')"
    value = METER_VALUE.format(tokens="properties.input_tokens + properties.output_tokens")
    return f"""
        SELECT count(*), sum(v) FROM (
            SELECT customer_id, event_name, CAST(timezone('UTC', "timestamp") AS DATE),
                sum({value}) AS v
            FROM (SELECT *, row_number() OVER (
                    PARTITION BY customer_id, event_id ORDER BY "timestamp") AS rn
                  FROM {auto})
            WHERE rn = 1 GROUP BY ALL)
    """


def _line(label: str, seconds: float) -> None:
    print(f"  {label:<36}{seconds:8.2f}s", flush=True)


def run_design(steps: list[tuple[str, str]], db: Path, memory_limit: str) -> tuple[float, tuple]:
    """Run the steps in a fresh database; returns the total wall time and (rows, sum(v))."""
    db.unlink(missing_ok=True)
    con = connect_limited(db, memory_limit)
    total = 0.0
    for label, sql in steps:
        start = time.perf_counter()
        con.execute(sql)
        con.execute("CHECKPOINT")
        elapsed = time.perf_counter() - start
        total += elapsed
        _line(label, elapsed)
    result = con.execute("SELECT count(*), sum(v) FROM daily").fetchone()
    con.close()
    db.unlink(missing_ok=True)
    return total, result


def run_bare(events_file: Path, memory_limit: str) -> tuple[float, tuple]:
    con = connect_limited(":memory:", memory_limit)
    start = time.perf_counter()
    result = con.execute(bare_query(events_file)).fetchone()
    con.close()
    return time.perf_counter() - start, result


def run_our_parse(events_file: Path, memory_limit: str) -> tuple[float, int]:
    """meterbook's parse of every record, counted and thrown away; returns (seconds, records)."""
    stat = events_file.stat()
    landing = LandingFile(events_file, events_file.name, "jsonl", False, stat.st_size, 0)
    con = connect_limited(":memory:", memory_limit)
    parse.create_macros(con)
    params = {"now": datetime.now(UTC), "seq_base": 0}
    start, records = time.perf_counter(), 0
    for batch in read_batches(con, landing):
        con.register(parse.SOURCE, batch.table)
        # counting the columns the checks produce keeps DuckDB from pruning their work away
        records += con.execute(
            "SELECT count(*), count(event_ts), count(properties), count(parse_reason) "
            f"FROM ({parse.parse_query(batch.docs_sql)})",
            params,
        ).fetchall()[0][0]
        con.unregister(parse.SOURCE)
    con.close()
    return time.perf_counter() - start, records


def main() -> None:
    args, work, events_file = events_from_args(__doc__.splitlines()[0], "bench-design-")
    start = time.perf_counter()
    sha256_file(events_file)
    _line("sha256 of the file", time.perf_counter() - start)
    bare_s, expected = run_bare(events_file, args.memory_limit)
    _line("bare query", bare_s)
    parse_s, records = run_our_parse(events_file, args.memory_limit)
    if records != args.events:
        raise SystemExit(f"meterbook's parse read {records:,} records, not {args.events:,}")
    _line(f"meterbook's parse ({parse_s / bare_s:.2f}x)", parse_s)
    for name, steps in designs(events_file).items():
        print(f"{name}:")
        total, result = run_design(steps, work / "design.duckdb", args.memory_limit)
        if result != expected:
            raise SystemExit(f"{name}: daily rows {result} differ from the bare query's {expected}")
        _line(f"total ({total / bare_s:.2f}x the bare query)", total)


if __name__ == "__main__":
    main()
