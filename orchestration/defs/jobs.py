"""Jobs finance and the schedules launch, and the reconciliation checks on event fates."""

from datetime import timedelta

from dagster import (
    AssetCheckResult,
    AssetKey,
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    asset_check,
    define_asset_job,
    schedule,
)

from orchestration.defs.catalog import pricing_catalog
from orchestration.defs.close.assets import billing_windows
from orchestration.defs.ingest.assets import raw_events
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.defs.transform.assets import billing_models, daily_usage_models, usage_models

_ingest = AssetSelection.assets(*raw_events.keys, *pricing_catalog.keys, *usage_models.keys)

ingest_landing_files = define_asset_job(
    "ingest_landing_files",
    selection=_ingest,
    description="Reads new landing files and gives every event its fate (billable, duplicate, ...).",
)

daily_usage_refresh = define_asset_job(
    "daily_usage_refresh",
    selection=_ingest | AssetSelection.assets(*daily_usage_models.keys),
    description="Refreshes one UTC day of usage per customer and meter (the month-so-far view).",
)

month_end_close = define_asset_job(
    "month_end_close",
    selection=_ingest
    | AssetSelection.assets(*billing_windows.keys, *billing_models.keys, "invoice_documents"),
    description=(
        "Month-end close: ingests, meters, rates and rebuilds the DRAFT invoices of the month, "
        "with their documents. Safe to re-run; finalized invoices never change."
    ),
)

finalize_invoices = define_asset_job(
    "finalize_invoices",
    selection=AssetSelection.assets("finalized_invoices"),
    description=(
        "Finalize the month: numbers the draft invoices (gapless) and freezes them in the ledger. "
        "Run the month-end close first. Running it twice changes nothing."
    ),
)

JOBS = [ingest_landing_files, daily_usage_refresh, month_end_close, finalize_invoices]


@schedule(
    job_name="daily_usage_refresh",
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description=(
        "Every night: refresh yesterday's usage, and rebuild the current month's draft invoices "
        "(and last month's while it is within grace_days) so the month so far is always visible."
    ),
)
def nightly_refresh(context: ScheduleEvaluationContext, meterbook: MeterbookWorkspace):
    tick = context.scheduled_execution_time
    yesterday = (tick - timedelta(days=1)).date()
    yield RunRequest(run_key=f"usage:{yesterday}", partition_key=yesterday.isoformat())
    months = {tick.strftime("%Y-%m")}
    grace = meterbook.catalog().settings.grace_days
    if tick.day <= grace:
        months.add((tick.replace(day=1) - timedelta(days=1)).strftime("%Y-%m"))
    for month in sorted(months):
        yield RunRequest(
            run_key=f"draft:{tick.date()}:{month}", partition_key=month, job_name="month_end_close"
        )


SCHEDULES = [nightly_refresh]


@asset_check(
    asset=AssetKey("fct_event_fates"),
    description="Lines read = sum of fates, per file and per event day.",
)
def fates_reconcile(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    with meterbook.reader() as con:
        per_file = con.execute(
            """
            SELECT f.path, f.lines_read, count(e.read_seq) AS fated
            FROM meterbook_raw.landing_files f
            LEFT JOIN marts.fct_event_fates e USING (file_sha256)
            -- per content: a path overwritten with other bytes names two files
            GROUP BY f.file_sha256, f.path, f.lines_read
            HAVING f.lines_read <> count(e.read_seq)
            ORDER BY f.path
            """
        ).fetchall()
        per_day = con.execute(
            """
            WITH r AS (SELECT CAST(event_ts AS DATE) AS d, count(*) AS n FROM meterbook_raw.raw_events
                       WHERE event_ts IS NOT NULL GROUP BY 1),
                 f AS (SELECT event_date AS d, count(*) AS n FROM marts.fct_event_fates
                       WHERE event_date IS NOT NULL GROUP BY 1)
            SELECT coalesce(r.d, f.d), r.n, f.n FROM r FULL JOIN f ON r.d = f.d
            WHERE r.n IS DISTINCT FROM f.n ORDER BY 1
            """
        ).fetchall()
    return AssetCheckResult(
        passed=not per_file and not per_day,
        metadata={
            "files_off": [f"{p}: read {n}, fated {m}" for p, n, m in per_file][:20],
            "days_off": [f"{d}: read {n}, fated {m}" for d, n, m in per_day][:20],
        },
    )


@asset_check(
    asset=AssetKey("fct_event_fates"),
    description="No (customer_id, event_id) key is billable twice.",
)
def no_key_billed_twice(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    with meterbook.reader() as con:
        twice = con.execute(
            """
            SELECT customer_id, event_id, count(*) FROM marts.fct_event_fates
            WHERE fate = 'billable' GROUP BY ALL HAVING count(*) > 1 LIMIT 20
            """
        ).fetchall()
    return AssetCheckResult(
        passed=not twice, metadata={"keys": [f"{c}/{e} x{n}" for c, e, n in twice]}
    )


CHECKS = [fates_reconcile, no_key_billed_twice]
