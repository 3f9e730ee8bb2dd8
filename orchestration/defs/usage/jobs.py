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
from orchestration.defs.ingest.jobs import INGEST_SELECTION
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.defs.usage.assets import daily_usage_models

daily_usage_refresh = define_asset_job(
    "daily_usage_refresh",
    selection=INGEST_SELECTION | AssetSelection.assets(*daily_usage_models.keys),
    description="Refreshes one UTC day of usage per customer and meter (the month-so-far view).",
)


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
    months = {BillingMonth.of(tick)}
    grace = meterbook.catalog().settings.grace_days
    if tick.day <= grace:
        months.add(BillingMonth.of(tick).previous())
    for month in map(str, sorted(months)):
        yield RunRequest(
            run_key=f"draft:{tick.date()}:{month}", partition_key=month, job_name="month_end_close"
        )
