"""Stage a run's parsed rows, then store them with their dedupe keys ranked.

`key_rank` counts the parsed occurrences of (customer_id, event_id) in read order, over all
ingests; `key_repeated` says the key has more than one. Rows with a parse_reason take no
part (NULL): a rejected event does not claim its key (SPEC 2.3).

Batches are parsed into a temporary table (`_mbi_run`); at the end of the run the rows are
ranked set-based, once: the run's keys are counted, joined with the keys already in
raw_events (one scan of the stored keys), and only keys repeated inside the run are ordered
by a window. The rows then go to raw_events in one append, and only rows committed by
earlier runs are updated (key_repeated on their keys). Ranking each batch against raw_events
instead would scan the stored keys once per batch, and updating rows appended in the same
transaction makes DuckDB log the whole append a second time.

`payload_hash` is what tells a duplicate from a conflict, and only rows whose key repeats
are ever compared, so it is computed for those rows only (NULL elsewhere): canonicalising the
properties of every event would cost more than the rest of the parse. Earlier rows get their
hash when a later ingest repeats their key.
"""

from __future__ import annotations

from datetime import datetime

import duckdb

RUN = "_mbi_run"  # the run's parsed rows
FILES = "_mbi_files"  # file_seq -> file_sha256, path
PRIOR = "_mbi_prior"  # the run's keys already stored, with their count

_RUN_COLUMNS = """
    file_seq BIGINT, read_seq BIGINT, line_no BIGINT, event_id VARCHAR, customer_id VARCHAR,
    event_name VARCHAR, event_ts TIMESTAMPTZ, properties JSON, source VARCHAR,
    parse_reason VARCHAR, raw_line VARCHAR
"""


def start_run(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {RUN} ({_RUN_COLUMNS})")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {FILES} (file_seq BIGINT, file_sha256 VARCHAR, path VARCHAR)"
    )


def add_file(con: duckdb.DuckDBPyConnection, file_seq: int, sha: str, path: str) -> None:
    con.execute(f"INSERT INTO {FILES} VALUES (?, ?, ?)", [file_seq, sha, path])


def stage_batch(con: duckdb.DuckDBPyConnection, parse_sql: str, params: dict, file_seq: int) -> int:
    """Parse one batch into the run's table; returns the rows staged.
    `params` are the parse's ($now, $seq_base)."""
    return con.execute(
        f"INSERT INTO {RUN} BY NAME SELECT {int(file_seq)} AS file_seq, * FROM ({parse_sql})",
        params,
    ).fetchone()[0]


def forget_file(con: duckdb.DuckDBPyConnection, file_seq: int) -> None:
    """Drop what one file staged (it turned out to be unreadable half-way)."""
    con.execute(f"DELETE FROM {RUN} WHERE file_seq = ?", [file_seq])


def stage_unreadable(
    con: duckdb.DuckDBPyConnection, file_seq: int, read_seq: int, error: str
) -> None:
    """An unreadable file counts as one malformed line, numbered 0 (the file as a whole)."""
    con.execute(
        f"INSERT INTO {RUN} (file_seq, read_seq, line_no, parse_reason, raw_line) "
        "VALUES (?, ?, 0, 'malformed', ?)",
        [file_seq, read_seq, error[:4096]],
    )


def finish_run(con: duckdb.DuckDBPyConnection, first_seq: int, ingested_at: datetime) -> None:
    """Rank the staged rows, append them to raw_events, flag earlier rows of their keys."""
    _count_prior_keys(con)
    con.execute(_INSERT_RANKED, {"ingested_at": ingested_at})
    con.execute(
        f"""
        UPDATE meterbook_raw.raw_events AS r
        SET key_repeated = true,
            payload_hash = mbi_payload_hash(r.event_name, r.event_ts, r.properties)
        FROM {PRIOR} AS k
        WHERE r.customer_id = k.customer_id AND r.event_id = k.event_id
            AND r.read_seq < $first AND r.key_rank IS NOT NULL AND NOT r.key_repeated
        """,
        {"first": first_seq},
    )
    con.execute(f"DROP TABLE {RUN}; DROP TABLE {FILES}; DROP TABLE {PRIOR}")


def _count_prior_keys(con: duckdb.DuckDBPyConnection) -> None:
    stored = con.execute(
        "SELECT count(*) FROM (SELECT 1 FROM meterbook_raw.raw_events "
        "WHERE key_rank IS NOT NULL LIMIT 1)"
    ).fetchone()[0]
    # on a first ingest there is nothing to look up: skip hashing the run's keys for nothing
    source = (
        "meterbook_raw.raw_events" if stored else "(SELECT * FROM meterbook_raw.raw_events LIMIT 0)"
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {PRIOR} AS
        SELECT r.customer_id, r.event_id, count(*) AS prior_n
        FROM {source} AS r
        SEMI JOIN (SELECT customer_id, event_id FROM {RUN} WHERE parse_reason IS NULL) AS k
            ON r.customer_id = k.customer_id AND r.event_id = k.event_id
        WHERE r.key_rank IS NOT NULL
        GROUP BY ALL
        """
    )


# A key seen once in the run (nearly all of them) gets prior + 1 without any ordering; only
# keys repeated inside the run are ordered by read_seq. Keys are strings, so they are joined
# once (`keyed`, narrow); everything after that joins on read_seq.
_INSERT_RANKED = f"""
INSERT INTO meterbook_raw.raw_events BY NAME
WITH run_keys AS (
    SELECT customer_id, event_id, count(*) AS run_n
    FROM {RUN} WHERE parse_reason IS NULL GROUP BY ALL
),
key_counts AS (
    SELECT k.customer_id, k.event_id, k.run_n, coalesce(p.prior_n, 0) AS prior_n
    FROM run_keys AS k LEFT JOIN {PRIOR} AS p USING (customer_id, event_id)
),
keyed AS MATERIALIZED (
    SELECT r.read_seq, r.customer_id, r.event_id, c.run_n, c.prior_n
    FROM {RUN} AS r JOIN key_counts AS c USING (customer_id, event_id)
    WHERE r.parse_reason IS NULL
),
repeats AS (
    SELECT read_seq,
        row_number() OVER (PARTITION BY customer_id, event_id ORDER BY read_seq) AS rn
    FROM keyed WHERE run_n > 1
),
-- hashed as a set of their own (the few rows whose key repeats), not a sparse CASE
hashes AS (
    SELECT r.read_seq, mbi_payload_hash(r.event_name, r.event_ts, r.properties) AS payload_hash
    FROM {RUN} AS r
    SEMI JOIN (SELECT read_seq FROM keyed WHERE run_n + prior_n > 1) AS k
        ON r.read_seq = k.read_seq
)
SELECT
    r.read_seq, f.file_sha256, f.path, r.line_no, r.event_id, r.customer_id, r.event_name,
    r.event_ts, r.properties, r.source, h.payload_hash, r.parse_reason, r.raw_line,
    $ingested_at AS ingested_at,
    k.prior_n + coalesce(x.rn, 1) AS key_rank,
    k.prior_n + k.run_n > 1 AS key_repeated
FROM {RUN} AS r
JOIN {FILES} AS f USING (file_seq)
LEFT JOIN keyed AS k ON r.read_seq = k.read_seq
LEFT JOIN repeats AS x ON r.read_seq = x.read_seq
LEFT JOIN hashes AS h ON r.read_seq = h.read_seq
"""
