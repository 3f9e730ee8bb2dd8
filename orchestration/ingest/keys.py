"""Rank the dedupe keys of a run's rows, once, after its last batch is appended.

`key_rank` counts the parsed occurrences of (customer_id, event_id) in read order, over all
ingests; a key is repeated when it has more than one. Rows with a parse_reason take no part:
a rejected event does not claim its key (SPEC 2.3).

Only rows whose key is repeated, a few percent, are stored in
`meterbook_raw.repeated_events` (read_seq, key_rank, payload_hash, and the key); every other parsed row
holds a key seen once, rank 1. Keeping the ranks beside raw_events lets the run append its
rows as it parses them and never update one: when a later ingest repeats an earlier key,
the earlier row is added here, in that ingest's transaction.

Keys are first compared by a 64-bit hash (integers group and join far faster than pairs of
strings): a row is a candidate when its key's hash occurs twice in the run or belongs to a
stored key (one scan of the stored keys). Only the candidates are then ranked on the keys
themselves, so a hash collision can never give a wrong rank.

`payload_hash` is what tells a duplicate from a conflict, and only rows whose key repeats
are ever compared, so it is computed for those rows only: canonicalising the properties of
every event would cost more than the rest of the parse.
"""

from __future__ import annotations

import duckdb

PRIOR_ROWS = "_mbi_prior_rows"  # stored rows whose key the run repeats
PRIOR = "_mbi_prior"  # the run's keys already stored, with their count
RANKED = "_mbi_ranked"  # key_rank, key_repeated, payload_hash of run rows whose key may repeat

# the run's parsed rows / the parsed rows stored by earlier runs
_RUN_ROWS = (
    "(SELECT * FROM meterbook_raw.raw_events WHERE read_seq >= $first AND parse_reason IS NULL)"
)
_STORED_ROWS = (
    "(SELECT * FROM meterbook_raw.raw_events WHERE read_seq < $first AND parse_reason IS NULL)"
)


def rank_run_keys(con: duckdb.DuckDBPyConnection, first_seq: int) -> None:
    """Store the ranks of the run's rows (read_seq >= first_seq) whose key is repeated, and
    add the earlier rows whose key this run repeats for the first time."""
    params = {"first": first_seq}
    _count_prior_keys(con, params)
    _rank_candidates(con, params)
    _add_stored_rows_repeated(con)
    con.execute(
        f"""
        INSERT INTO meterbook_raw.repeated_events
            (read_seq, key_rank, payload_hash, customer_id, event_id)
        SELECT read_seq, key_rank, payload_hash, customer_id, event_id
        FROM {RANKED} WHERE key_repeated
        """
    )
    con.execute(f"DROP TABLE {PRIOR_ROWS}; DROP TABLE {PRIOR}; DROP TABLE {RANKED}")


def _add_stored_rows_repeated(con: duckdb.DuckDBPyConnection) -> None:
    """The stored rows whose key this run repeats for the first time (they were rank 1)."""
    if not con.execute(f"SELECT count(*) FROM {PRIOR_ROWS}").fetchone()[0]:
        return  # a run that repeats no stored key does not read the stored rows again
    con.execute(
        f"""
        INSERT INTO meterbook_raw.repeated_events
            (read_seq, key_rank, payload_hash, customer_id, event_id)
        SELECT r.read_seq, 1, mbi_payload_hash(r.event_name, r.event_ts, r.properties),
            r.customer_id, r.event_id
        FROM meterbook_raw.raw_events AS r
        SEMI JOIN {PRIOR_ROWS} AS k USING (read_seq)
        ANTI JOIN meterbook_raw.repeated_events AS seen USING (read_seq)
        """
    )


def _count_prior_keys(con: duckdb.DuckDBPyConnection, params: dict) -> None:
    """The stored rows whose key the run repeats, and those keys with how often. Matched on
    a 64-bit hash of the key first (integers join far faster than string pairs), then on the
    key itself. The rows are kept so that the stored keys are scanned once per run."""
    has_stored = con.execute(
        f"SELECT count(*) FROM (SELECT 1 FROM {_STORED_ROWS} LIMIT 1)", params
    ).fetchone()[0]
    # on a first ingest there is nothing to look up: skip hashing the run's keys for nothing
    stored = _STORED_ROWS if has_stored else f"(SELECT * FROM {_STORED_ROWS} LIMIT 0)"
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {PRIOR_ROWS} AS
        WITH maybe AS (
            SELECT r.read_seq, r.customer_id, r.event_id
            FROM {stored} AS r
            WHERE hash(r.customer_id, r.event_id) IN (
                SELECT hash(customer_id, event_id) FROM {_RUN_ROWS})
        )
        SELECT m.*
        FROM maybe AS m
        SEMI JOIN (SELECT customer_id, event_id FROM {_RUN_ROWS}) AS k
            ON m.customer_id = k.customer_id AND m.event_id = k.event_id
        """,
        params,
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {PRIOR} AS "
        f"SELECT customer_id, event_id, count(*) AS prior_n FROM {PRIOR_ROWS} GROUP BY ALL"
    )


def _rank_candidates(con: duckdb.DuckDBPyConnection, params: dict) -> None:
    """Rank the few run rows whose key may repeat; every other parsed row has key_rank 1.

    A row may repeat its key when the 64-bit hash of its key occurs twice in the run or its
    key is stored already. Ranks are then computed on the keys themselves, so a hash
    collision only costs a row being ranked here (as 1, unrepeated): it is never wrong.
    """
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {RANKED} AS
        WITH hashed AS (
            SELECT read_seq, hash(customer_id, event_id) AS h FROM {_RUN_ROWS}
        ),
        candidates AS (
            SELECT h FROM hashed GROUP BY h HAVING count(*) > 1
            UNION SELECT hash(customer_id, event_id) FROM {PRIOR}
        ),
        rows AS (
            SELECT r.read_seq, r.customer_id, r.event_id, r.event_name, r.event_ts, r.properties
            FROM {_RUN_ROWS} AS r
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
            read_seq, customer_id, event_id, key_rank, key_repeated,
            CASE WHEN key_repeated
                THEN mbi_payload_hash(event_name, event_ts, properties) END AS payload_hash
        FROM ranked
        """,
        params,
    )
