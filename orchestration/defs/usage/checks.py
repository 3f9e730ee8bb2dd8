"""Reconciliation of the usage stage: every line read has exactly one fate."""

from dagster import AssetCheckResult, asset_check

from orchestration.defs.dbt.project import model_key
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.warehouse.models import with_refs

# files whose lines read differ from their fates (a path overwritten with other bytes names
# two files, so per content)
_FILES_OFF = """
SELECT f.path, f.lines_read, count(e.read_seq) AS fated
FROM meterbook_raw.landing_files f
LEFT JOIN {{ ref('fct_event_fates') }} e USING (file_sha256)
GROUP BY f.file_sha256, f.path, f.lines_read
HAVING f.lines_read <> count(e.read_seq)
ORDER BY f.path
"""
_DAYS_OFF = """
WITH r AS (SELECT CAST(event_ts AS DATE) AS d, count(*) AS n FROM meterbook_raw.raw_events
           WHERE event_ts IS NOT NULL GROUP BY 1),
     f AS (SELECT event_date AS d, count(*) AS n FROM {{ ref('fct_event_fates') }}
           WHERE event_date IS NOT NULL GROUP BY 1)
SELECT coalesce(r.d, f.d), r.n, f.n FROM r FULL JOIN f ON r.d = f.d
WHERE r.n IS DISTINCT FROM f.n ORDER BY 1
"""
_BILLED_TWICE = """
SELECT customer_id, event_id, count(*) FROM {{ ref('fct_event_fates') }}
WHERE fate = 'billable' GROUP BY ALL HAVING count(*) > 1 LIMIT 20
"""


@asset_check(
    asset=model_key("fct_event_fates"),
    description="Lines read = sum of fates, per file and per event day.",
)
def fates_reconcile(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    with meterbook.reader() as con:
        per_file = con.execute(with_refs(_FILES_OFF)).fetchall()
        per_day = con.execute(with_refs(_DAYS_OFF)).fetchall()
    return AssetCheckResult(
        passed=not per_file and not per_day,
        metadata={
            "files_off": [f"{p}: read {n}, fated {m}" for p, n, m in per_file][:20],
            "days_off": [f"{d}: read {n}, fated {m}" for d, n, m in per_day][:20],
        },
    )


@asset_check(
    asset=model_key("fct_event_fates"),
    description="No (customer_id, event_id) key is billable twice.",
)
def no_key_billed_twice(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    with meterbook.reader() as con:
        twice = con.execute(with_refs(_BILLED_TWICE)).fetchall()
    return AssetCheckResult(
        passed=not twice, metadata={"keys": [f"{c}/{e} x{n}" for c, e, n in twice]}
    )
