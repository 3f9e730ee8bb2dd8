"""How the storage format of raw events changes the cost of storing them and of metering them.

Run:  .venv/bin/python benchmarks/bench_storage_designs.py --events 10000000 [--workdir DIR]
      [--memory-limit 4GB]   (each store ends with a CHECKPOINT; file MB is after it)

On bench_ingest's JSON-lines file (10,000 customers, 20 event names, 2% duplicates) each
design stores every event, with a read order and its provenance, by one CREATE TABLE in a
fresh DuckDB file; then a fresh process runs the meter query on the stored table: dedupe on
(customer_id, event_id) keeping the first by read_seq, then per customer x event_name x UTC
day count(*) and sum(input_tokens + output_tokens), exact (DECIMAL(38, 12) from JSON text,
as the meters read it, BIGINT from typed columns). Designs:
- current: properties as JSON text, provenance (file_seq, path, line_no) on every row, as
  meterbook_raw.raw_events has them;
- struct: properties as read_json's inferred STRUCT, typed from a sample: a key first seen
  past it fails the read, a 2.5 past it is stored as 2 without a word, absent and null are
  one. It keeps every property only of data as uniform as this file's;
- shredded + full JSON: typed input_tokens, output_tokens beside the whole JSON text;
- shredded + rest JSON: the typed columns and the JSON text without the keys they hold. A
  key is shredded only when its value is an integer that fits a BIGINT, so every value can
  be put back (checked on every row in a smoke run; ingest drops null values beforehand);
- per-block provenance: shredded + rest JSON (the smallest that keeps every property), its
  rows carrying read_seq alone; `blocks` maps runs of lines of one file (see RECOVER_LINE).
Each phase runs in its own process (peak RSS its own). For scale: bench_ingest's bare query
(read_json -> dedupe -> count, nothing stored) and the same with the token sums, whose totals
every design must match. The bare queries dedupe by timestamp: the file's duplicates are
exact copies, so which occurrence wins does not change a total.

Line numbers: read_json does not give them. Each design numbers rows by `row_number() OVER ()`
on the scan. DuckDB plans that as a streaming window, which is not a parallel operator and is
order-fixed, so scan, parse and insert run on one thread, in file order: the number is the
record's place in the file, which is its line while every line holds one record (no blank
lines: true of the generated file). It costs the store its parallelism. Up to 2,000,000
events this is checked on every row against Python's own numbering of the file.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_ingest import _bare_phase, _figures, run_phase  # noqa: E402
from bench_storage_floor import connect_limited, events_from_args  # noqa: E402

from orchestration.sql import quote_literal  # noqa: E402

SEQ_BASE, FILE_SEQ, BLOCK_LINES, VERIFY_UP_TO = 5_000_000_000, 7, 100_000, 2_000_000
KEYS = ("input_tokens", "output_tokens")
TEXT_COLUMNS = (
    ", columns = {event_id: 'VARCHAR', customer_id: 'VARCHAR', event_name: 'VARCHAR', "
    "timestamp: 'TIMESTAMPTZ', properties: 'JSON', source: 'VARCHAR'}"
)
JSON_TOKENS = " + ".join(f"CAST(properties->>'$.{k}' AS DECIMAL(38, 12))" for k in KEYS)
TYPED_TOKENS = "input_tokens + output_tokens"
# any row's file and line, for a block that is a contiguous run of lines of one file
RECOVER_LINE = """
    SELECT e.read_seq, f.path, b.first_line_no + (e.read_seq - b.first_read_seq) AS line_no
    FROM raw_events e
    JOIN blocks b ON e.read_seq BETWEEN b.first_read_seq AND b.last_read_seq
    JOIN files f USING (file_seq)"""
# the properties of a shredded + rest JSON row, put back together
RECOVER_PROPERTIES = (
    "json_merge_patch(properties, "
    + ", ".join(f"if({k} IS NULL, '{{}}', json_object('{k}', {k}))" for k in KEYS)
    + ")"
)
METER = """
    WITH ev AS (
        SELECT read_seq, customer_id, event_id, event_name, event_ts, {tokens} AS tokens
        FROM {events}
    ),
    firsts AS (
        SELECT * FROM ev QUALIFY row_number() OVER (
            PARTITION BY customer_id, event_id ORDER BY {order}) = 1
    ),
    cells AS (
        SELECT customer_id, event_name, CAST(timezone('UTC', event_ts) AS DATE),
            count(*) AS n, sum(tokens) AS tokens
        FROM firsts GROUP BY ALL
    )
    SELECT count(*), sum(n), sum(tokens) FROM cells"""


def designs(events_file: Path) -> dict[str, tuple[list[str], str]]:
    """name -> (the statements that store the events, the meter query's token expression)."""
    path = quote_literal(str(events_file))

    def numbered(columns: str) -> str:
        scan = f"read_json({path}, format = 'newline_delimited'{columns})"
        return f"(SELECT row_number() OVER () AS line_no, * FROM {scan})"

    # the typed value when the JSON value is an integer that fits a BIGINT, else NULL (the
    # value then stays in the JSON text)
    typed = ", ".join(
        f"if(json_type(v[{i}]) IN ('BIGINT', 'UBIGINT'), TRY_CAST(v[{i}]::VARCHAR AS BIGINT), "
        f"NULL) AS {k}"
        for i, k in enumerate(KEYS, 1)
    )
    paths = ", ".join(f"'$.{k}'" for k in KEYS)
    shredded = (
        f"(SELECT *, {typed} FROM (SELECT *, json_extract(properties, [{paths}]) AS v "
        f"FROM {numbered(TEXT_COLUMNS)}))"
    )
    # merge patch: a null removes the key, so only the keys that were shredded go
    rest = (
        ", json_merge_patch(properties, json_object("
        + ", ".join(f"'{k}', if({k} IS NULL, v[{i}], NULL)" for i, k in enumerate(KEYS, 1))
        + ")) AS properties"
    )
    per_row = f"{FILE_SEQ}::BIGINT AS file_seq, {path} AS path, line_no,"

    def store(src: str, props: str, provenance: str = per_row) -> str:
        return (
            f"CREATE TABLE raw_events AS SELECT {SEQ_BASE} + line_no AS read_seq, {provenance} "
            f'event_id, customer_id, event_name, "timestamp" AS event_ts, {props}, source, '
            "NULL::VARCHAR AS parse_reason, NULL::VARCHAR AS raw_line, now() AS ingested_at "
            f"FROM {src}"
        )

    blocks = [
        f"CREATE TABLE files AS SELECT {FILE_SEQ}::BIGINT AS file_seq, {path} AS path",
        f"""CREATE TABLE blocks AS SELECT {FILE_SEQ}::BIGINT AS file_seq,
                {SEQ_BASE} + start + 1 AS first_read_seq,
                {SEQ_BASE} + least(start + {BLOCK_LINES}, n) AS last_read_seq,
                start + 1 AS first_line_no
            FROM (SELECT unnest(range(0, n, {BLOCK_LINES})) AS start, n
                  FROM (SELECT count(*) AS n FROM raw_events))""",
    ]
    typed_cols = ", ".join(KEYS)
    return {
        "current (JSON text)": ([store(numbered(TEXT_COLUMNS), "properties")], JSON_TOKENS),
        "struct (inferred)": (
            [store(numbered(""), "properties")],
            " + ".join(f"properties.{k}" for k in KEYS),
        ),
        "shredded + full JSON": ([store(shredded, f"{typed_cols}, properties")], TYPED_TOKENS),
        "shredded + rest JSON": ([store(shredded, typed_cols + rest)], TYPED_TOKENS),
        "per-block provenance": (
            [store(shredded, typed_cols + rest, provenance=""), *blocks],
            TYPED_TOKENS,
        ),
    }


def _store_phase(db: str, statements: list[str], memory_limit: str, out) -> None:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    con = connect_limited(db, memory_limit)
    for sql in statements:
        con.execute(sql)
    con.execute("CHECKPOINT")
    rows = con.execute("SELECT count(*) FROM raw_events").fetchone()[0]
    con.close()
    out.put({**_figures(start_wall, start_cpu, rows), "mb": Path(db).stat().st_size / 2**20})


def _meter_phase(db: str, events: str, tokens: str, order: str, memory_limit: str, out) -> None:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    con = connect_limited(db, memory_limit)
    totals = con.execute(METER.format(events=events, tokens=tokens, order=order)).fetchone()
    con.close()
    out.put({**_figures(start_wall, start_cpu, totals[0]), "totals": totals})


def verify(work: Path, events_file: Path, memory_limit: str) -> None:
    """Line numbers against Python's own, a few rows' file and line from `blocks`, and every
    row's properties put back from shredded + rest JSON; SystemExit if any is off."""
    lines = events_file.read_text().splitlines()
    truth = pa.table({"line_no": pa.array(range(1, len(lines) + 1)), "line": lines})
    n, found = len(lines), []
    # first and last row, each side of a block boundary, two inside
    picks = sorted({p for p in (1, n, BLOCK_LINES, BLOCK_LINES + 1, n // 3, n // 2) if 0 < p <= n})
    for name, sql in (
        (
            "current",
            """SELECT count(*) FILTER (WHERE NOT contains(t.line,
                   '"event_id":"' || e.event_id || '"') OR t.line IS NULL) + ABS(count(*) - $n)
               FROM raw_events e LEFT JOIN truth t USING (line_no)""",
        ),
        (
            "block",
            f"""SELECT count(*) FILTER (WHERE NOT contains(t.line,
                   '"event_id":"' || e.event_id || '"') OR r.path <> $path)
                   + len($picks) - count(*)
               FROM ({RECOVER_LINE}) r JOIN raw_events e USING (read_seq)
               JOIN truth t USING (line_no)
               WHERE e.read_seq - {SEQ_BASE} IN (SELECT unnest($picks))""",
        ),
        (
            "rest",
            f"""SELECT count(*) FILTER (WHERE list_sort(map_entries(json_transform(
                   json_extract(t.line, '$.properties'), '"MAP(VARCHAR, JSON)"')))
                   IS DISTINCT FROM list_sort(map_entries(json_transform(
                   {RECOVER_PROPERTIES}, '"MAP(VARCHAR, JSON)"')))) + ABS(count(*) - $n)
               FROM raw_events JOIN truth t ON t.line_no = read_seq - {SEQ_BASE}""",
        ),
    ):
        con = connect_limited(work / f"{name}.duckdb", memory_limit)
        con.register("truth", truth)
        params = {"picks": picks, "path": str(events_file)} if name == "block" else {"n": n}
        found.append(con.execute(sql, params).fetchone()[0])
        con.close()
    if any(found):
        raise SystemExit(f"verify FAILED: rows off (line numbers, blocks, properties): {found}")
    print(
        f"verified: {n:,} line numbers; file and line of {len(picks)} rows from blocks; "
        f"{n:,} rows' properties put back from shredded + rest JSON"
    )


def main() -> None:
    args, work, events_file = events_from_args(__doc__.splitlines()[0], "bench-designs-")
    limit, names = args.memory_limit, ("current", "struct", "full", "rest", "block")
    print(
        f"{'':<24}{'store: wall s':>14} {'cpu s':>7} {'file MB':>8} {'RSS MiB':>8}"
        f"   {'meter: wall s':>14} {'cpu s':>7} {'RSS MiB':>8}"
    )
    totals, cases = {}, designs(events_file)
    for name, (label, (statements, tokens)) in zip(names, cases.items(), strict=True):
        db = work / f"{name}.duckdb"
        db.unlink(missing_ok=True)
        store = run_phase(_store_phase, str(db), statements, limit)
        meter = run_phase(_meter_phase, str(db), "raw_events", tokens, "read_seq", limit)
        totals[label] = meter["totals"]
        print(
            f"{label:<24}{store['wall_s']:14.2f} {store['cpu_s']:7.2f} {store['mb']:8.1f} "
            f"{store['peak_rss_mib']:8.0f}   {meter['wall_s']:14.2f} {meter['cpu_s']:7.2f} "
            f"{meter['peak_rss_mib']:8.0f}",
            flush=True,
        )
    scan = f"read_json({quote_literal(str(events_file))}, format = 'newline_delimited')"
    bare_rel = f'(SELECT *, "timestamp" AS event_ts, NULL AS read_seq FROM {scan})'
    bare = run_phase(
        _meter_phase, ":memory:", bare_rel, cases["struct (inferred)"][1], "event_ts", limit
    )
    count_only = run_phase(_bare_phase, str(events_file), limit, None)
    for label, f in (("bare, token sums", bare), ("bare (bench_ingest)", count_only)):
        rss = f["peak_rss_mib"]
        print(f"{label:<24}{'':>41}   {f['wall_s']:14.2f} {f['cpu_s']:7.2f} {rss:8.0f}")
    print("bare: {:,} cells, {:,} events, {:,} tokens".format(*bare["totals"]))
    off = {k: v for k, v in totals.items() if tuple(v) != tuple(bare["totals"])}
    if off or count_only["rows"] != bare["totals"][0]:
        raise SystemExit(f"meter totals differ from the bare query's: {off or count_only}")
    if args.events <= VERIFY_UP_TO:
        verify(work, events_file, limit)
    for name in names:
        (work / f"{name}.duckdb").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
