"""The Stripe sync finance launches after finalizing, and the payment-status pull on a schedule."""

from dagster import AssetSelection, DefaultScheduleStatus, ScheduleDefinition, define_asset_job

from orchestration.defs.stripe.assets import accounts_receivable, stripe_invoices

stripe_sync = define_asset_job(
    "stripe_sync",
    selection=AssetSelection.assets(*stripe_invoices.keys, *accounts_receivable.keys),
    description=(
        "Sends the month's finalized invoices to Stripe and reads back their payment status. "
        "Run it after finalizing the month."
    ),
)

stripe_payment_status = define_asset_job(
    "stripe_payment_status",
    selection=AssetSelection.assets(*accounts_receivable.keys),
    description=(
        "Reads the payment status of every invoice sent to Stripe. Run by its schedule every "
        "six hours, or by hand before following up on unpaid invoices."
    ),
)

payment_status_schedule = ScheduleDefinition(
    job=stripe_payment_status,
    cron_schedule="0 */6 * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description=(
        "Every six hours: reads payment status from Stripe for the receivables view. Turn it "
        "on once invoices are sent to Stripe."
    ),
)
