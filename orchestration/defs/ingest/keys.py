"""Stage a run's parsed rows, then store them with their dedupe keys ranked.

`key_rank` counts the parsed occurrences of (customer_id, event_id) in read order, over all
ingests; `key_repeated` says the key has more than one. Rows with a parse_reason take no
part (NULL): a rejected event does not claim its key (SPEC 2.3).

Batches are parsed into a temporary table (`_mbi_run`); at the end of the run the rows are
ranked set-based, once. Keys are first compared by a 64-bit hash (integers group and join
far faster than pairs of strings): a row is a candidate when its key's hash occurs twice in
the run or belongs to a stored key (one scan of the stored keys). Only the candidates, a few
percent of the rows, are then ranked on the keys themselves, so a hash collision can never
give a wrong rank. Every other row holds a key seen once: rank 1. The rows then go to
raw_events in one append, and only rows committed by earlier runs are updated
(key_repeated on their keys). Ranking each batch against raw_events
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
RANKED = "_mbi_ranked"  # key_rank, key_repeated, payload_hash of rows whose key may repeat

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
    _rank_candidates(con)
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
    con.execute(f"DROP TABLE {RUN}; DROP TABLE {FILES}; DROP TABLE {PRIOR}; DROP TABLE {RANKED}")


def _count_prior_keys(con: duckdb.DuckDBPyConnection) -> None:
    """The run's keys already stored, with how often. Matched on a 64-bit hash of the key
    first (integers join far faster than string pairs), then on the key itself."""
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
        WITH maybe AS (
            SELECT r.customer_id, r.event_id
            FROM {source} AS r
            WHERE r.key_rank IS NOT NULL AND hash(r.customer_id, r.event_id) IN (
                SELECT hash(customer_id, event_id) FROM {RUN} WHERE parse_reason IS NULL)
        )
        SELECT m.customer_id, m.event_id, count(*) AS prior_n
        FROM maybe AS m
        SEMI JOIN (SELECT customer_id, event_id FROM {RUN} WHERE parse_reason IS NULL) AS k
            ON m.customer_id = k.customer_id AND m.event_id = k.event_id
        GROUP BY ALL
        """
    )


def _rank_candidates(con: duckdb.DuckDBPyConnection) -> None:
    """Rank the few rows whose key may repeat; every other parsed row has key_rank 1.

    A row may repeat its key when the 64-bit hash of its key occurs twice in the run or its
    key is stored already. Ranks are then computed on the keys themselves, so a hash
    collision only costs a row being ranked here (as 1, unrepeated): it is never wrong.
    """
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {RANKED} AS
        WITH hashed AS (
            SELECT read_seq, hash(customer_id, event_id) AS h FROM {RUN} WHERE parse_reason IS NULL
        ),
        candidates AS (
            SELECT h FROM hashed GROUP BY h HAVING count(*) > 1
            UNION SELECT hash(customer_id, event_id) FROM {PRIOR}
        ),
        rows AS (
            SELECT r.read_seq, r.customer_id, r.event_id, r.event_name, r.event_ts, r.properties
            FROM {RUN} AS r
            SEMI JOIN (SELECT read_seq FROM hashed SEMI JOIN candidates USING (h)) AS c
                USING (read_seq)
        ),
        ranked AS (
            SELECT
                r.*,
                coalesce(p.prior_n, 0) + row_number() OVER (
                    PARTITION BY r.customer_id, r.event_id ORDER BY r.read_seq) AS key_rank,
                coalesce(p.prior_n, 0) + count(*) OVER (
                    PARTITION BY r.customer_id, r.event_id) > 1 AS key_repeated
            FROM rows AS r LEFT JOIN {PRIOR} AS p USING (customer_id, event_id)
        )
        SELECT
            read_seq, key_rank, key_repeated,
            CASE WHEN key_repeated
                THEN mbi_payload_hash(event_name, event_ts, properties) END AS payload_hash
        FROM ranked
        """
    )


# Rows outside the ranked candidates hold a key seen once: rank 1, not repeated. Rows with a
# parse_reason take no part (NULL).
_INSERT_RANKED = f"""
INSERT INTO meterbook_raw.raw_events BY NAME
SELECT
    r.read_seq, f.file_sha256, f.path, r.line_no, r.event_id, r.customer_id, r.event_name,
    r.event_ts, r.properties, r.source, k.payload_hash, r.parse_reason, r.raw_line,
    $ingested_at AS ingested_at,
    CASE WHEN r.parse_reason IS NULL THEN coalesce(k.key_rank, 1) END AS key_rank,
    CASE WHEN r.parse_reason IS NULL THEN coalesce(k.key_repeated, false) END AS key_repeated
FROM {RUN} AS r
JOIN {FILES} AS f USING (file_seq)
LEFT JOIN {RANKED} AS k USING (read_seq)
"""
