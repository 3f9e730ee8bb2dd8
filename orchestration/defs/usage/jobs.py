"""The daily refresh: yesterday's usage, and the month so far as draft invoices."""

from datetime import timedelta

from dagster import (
    AssetSelection,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from orchestration.billing.month import BillingMonth
from orchestration.defs.entitlements.jobs import ENTITLEMENT_SELECTION
from orchestration.defs.ingest.jobs import INGEST_SELECTION
from orchestration.defs.partitions import first_month
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.defs.usage.assets import daily_usage_models

daily_usage_refresh = define_asset_job(
    "daily_usage_refresh",
    selection=INGEST_SELECTION
    | AssetSelection.assets(*daily_usage_models.keys)
    | ENTITLEMENT_SELECTION,
    description=(
        "Refreshes one day (UTC) of usage per customer and meter, for the month to date. Run "
        "by the nightly schedule; launch it for a past day after that day's files were "
        "corrected."
    ),
)


@schedule(
    job_name="daily_usage_refresh",
    cron_schedule="30 1 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description=(
        "Every night: counts yesterday's usage and rebuilds this month's draft invoices (and "
        "last month's, during the catalog's grace_days for late usage), so the month to date "
        "is always visible. Turn it on for day-to-day follow-up; it never finalizes."
    ),
)
def nightly_refresh(context: ScheduleEvaluationContext, meterbook: MeterbookWorkspace):
    tick = context.scheduled_execution_time
    # partitions start at the first subscription's month: nothing to refresh before it
    first = first_month(meterbook.workspace)
    yesterday = (tick - timedelta(days=1)).date()
    if yesterday >= first.first_day:
        yield RunRequest(run_key=f"usage:{yesterday}", partition_key=yesterday.isoformat())
    months = {BillingMonth.of(tick)}
    grace = meterbook.catalog().settings.grace_days
    if tick.day <= grace:
        months.add(BillingMonth.of(tick).previous())
    for month in map(str, sorted(m for m in months if m >= first)):
        yield RunRequest(
            run_key=f"draft:{tick.date()}:{month}", partition_key=month, job_name="month_end_close"
        )
