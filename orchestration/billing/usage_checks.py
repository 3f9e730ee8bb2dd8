"""Reconciliation of the usage stage: every line read has exactly one fate, per file and per
event day, and no event key is billable twice.

A build checks what it added (`since` = the read_seq its fates started after: the files it
read and the days its events fall on); `meterbook verify` checks everything (`since` = 0).
Each function returns `(passed, metadata)`, wrapped as Dagster asset checks by
defs/usage/checks.py.
"""

from __future__ import annotations

from typing import Any

import duckdb

from orchestration.warehouse.models import with_refs

# files whose lines read differ from their fates (a path overwritten with other bytes names
# two files, so per content): the files read after $since (an ingest appends a file's rows in
# one transaction, so no file straddles a build; a literal read_seq bound, so the stored rows
# are skipped), or every file when $since is 0 (verify: also a file none of whose rows is
# there)
_FILES_OFF = """
WITH fated AS (
    SELECT r.file_seq, count(e.read_seq) AS n
    FROM meterbook_raw.raw_events AS r
    LEFT JOIN (SELECT read_seq FROM {{ ref('int_events_fated') }} WHERE read_seq > $since) AS e
      USING (read_seq)
    WHERE r.read_seq > $since
    GROUP BY 1
)
SELECT f.path, f.lines_read, coalesce(fated.n, 0)
FROM meterbook_raw.landing_files AS f
LEFT JOIN fated USING (file_seq)
WHERE (fated.file_seq IS NOT NULL OR $since = 0)
  AND f.lines_read <> coalesce(fated.n, 0)
ORDER BY f.path
"""
# event days whose raw events differ in number from their fates: the days of the events read
# after $since, between $first and $last (the span of those days)
_DAYS_OFF = """
WITH days AS (
    SELECT DISTINCT event_date AS d FROM {{ ref('int_events_fated') }}
    WHERE read_seq > $since AND event_date IS NOT NULL
),
r AS (SELECT CAST(timezone('UTC', event_ts) AS DATE) AS d, count(*) AS n
      FROM meterbook_raw.raw_events
      WHERE event_ts >= timezone('UTC', CAST($first AS TIMESTAMP))
        AND event_ts < timezone('UTC', CAST($last + INTERVAL 1 DAY AS TIMESTAMP))
      GROUP BY 1),
f AS (SELECT event_date AS d, count(*) AS n FROM {{ ref('int_events_fated') }}
      WHERE event_date BETWEEN $first AND $last GROUP BY 1)
SELECT days.d, coalesce(r.n, 0), coalesce(f.n, 0)
FROM days LEFT JOIN r USING (d) LEFT JOIN f USING (d)
WHERE coalesce(r.n, 0) <> coalesce(f.n, 0) ORDER BY 1
"""
# keys billable twice. Everything (verify, $since = 0): every billable event's key.
_BILLED_TWICE = """
WITH billable AS (
    SELECT r.customer_id, r.event_id
    FROM {{ ref('int_events_fated') }} AS e
    JOIN meterbook_raw.raw_events AS r USING (read_seq)
    WHERE e.fate = 'billable'
)
SELECT customer_id, event_id, count(*) FROM billable
GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL LIMIT 20
"""
# After a build: a key billable twice has more than one parsed occurrence, so only the keys
# the ingest recorded as repeated by events read after $since are looked at (repeated_events
# carries the key): the stored raw events are not read.
_BILLED_TWICE_SINCE = """
WITH keys AS (
    SELECT DISTINCT customer_id, event_id FROM meterbook_raw.repeated_events
    WHERE read_seq > $since
),
occurrences AS (
    SELECT k.customer_id, k.event_id, k.read_seq
    FROM meterbook_raw.repeated_events AS k SEMI JOIN keys USING (customer_id, event_id)
)
SELECT o.customer_id, o.event_id, count(*)
FROM occurrences AS o JOIN {{ ref('int_events_fated') }} AS e USING (read_seq)
WHERE e.fate = 'billable'
GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL LIMIT 20
"""


def check_fates_reconcile(con: duckdb.DuckDBPyConnection, since: int) -> tuple[bool, dict]:
    """Lines read = fates, per file and per event day, for what was read after `since`."""
    per_file = con.execute(with_refs(_FILES_OFF), {"since": since}).fetchall()
    first, last = con.execute(
        with_refs(
            "SELECT min(event_date), max(event_date) FROM {{ ref('int_events_fated') }} "
            "WHERE read_seq > ?"
        ),
        [since],
    ).fetchone()
    per_day = []
    if first is not None:
        day_params = {"since": since, "first": first, "last": last}
        per_day = con.execute(with_refs(_DAYS_OFF), day_params).fetchall()
    return not per_file and not per_day, {
        "checked_after_read_seq": since,
        "files_off": [f"{p}: read {n}, fated {m}" for p, n, m in per_file][:20],
        "days_off": [f"{d}: read {n}, fated {m}" for d, n, m in per_day][:20],
    }


def check_no_key_billed_twice(con: duckdb.DuckDBPyConnection, since: int) -> tuple[bool, dict]:
    """No (customer_id, event_id) of an event read after `since` is billable twice."""
    if since:
        twice = con.execute(with_refs(_BILLED_TWICE_SINCE), {"since": since}).fetchall()
    else:
        twice = con.execute(with_refs(_BILLED_TWICE)).fetchall()
    return not twice, {
        "checked_after_read_seq": since,
        "keys": [f"{c}/{e} x{n}" for c, e, n in twice],
    }


def last_build_start(con: duckdb.DuckDBPyConnection) -> int:
    """The read_seq the last fates build started after (0: it fated every event)."""
    row = con.execute(
        with_refs(
            """
            SELECT min(fated_after) FROM {{ ref('int_events_fated') }}
            WHERE fated_in = (SELECT fated_in FROM {{ ref('int_events_fated') }}
                              ORDER BY read_seq DESC LIMIT 1)
            """
        )
    ).fetchone()
    return int(row[0] or 0)


def usage_problems(con: duckdb.DuckDBPyConnection, since: int = 0) -> dict[str, Any]:
    """Both checks from `since` (0: every event), by name: (passed, metadata)."""
    return {
        "fates_reconcile": check_fates_reconcile(con, since),
        "no_key_billed_twice": check_no_key_billed_twice(con, since),
    }
