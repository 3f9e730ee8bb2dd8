"""Dunning as finance runs it: daily, after a fresh pull of payment status from Stripe."""

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from orchestration.defs.dunning.assets import dunning_notices
from orchestration.defs.stripe.assets import accounts_receivable

# The pull first: a reminder must never go out for an invoice paid since the last pull.
dunning = define_asset_job(
    "dunning",
    selection=AssetSelection.assets(*accounts_receivable.keys, *dunning_notices.keys),
    description=(
        "Reads payment status from Stripe, then emails the payment reminders that are due for "
        "overdue invoices, each once. Run by its daily schedule, or by hand (`meterbook "
        "dunning --send`)."
    ),
)

dunning_schedule = ScheduleDefinition(
    job=dunning,
    cron_schedule="0 8 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description=(
        "Every day at 08:00 UTC: refreshes payment status from Stripe and emails the payment "
        "reminders and final notices due for overdue invoices (settings.dunning), each once. "
        "Turn it on once invoices are sent to Stripe and settings.smtp is set."
    ),
)
