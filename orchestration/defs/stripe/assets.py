"""Stripe in Dagster: push the month's finalized invoices; pull payment status on a schedule."""

from dagster import (
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from integrations.stripe import overdue_invoices, pull_payment_status, sync_period
from orchestration.defs.partitions import ONE_PARTITION_PER_RUN, monthly_billing
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.defs.stripe.resource import StripeResource
from orchestration.workspace import now_utc


@asset(
    key="stripe_invoices",
    group_name="stripe",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    deps=["finalized_invoices"],
    description=(
        "The month's finalized invoices, sent to Stripe once each (customer found or created, "
        "one item per invoice line). Run the Stripe sync after finalizing a month; running it "
        "again sends nothing twice."
    ),
    kinds={"stripe"},
)
def stripe_invoices(
    context: AssetExecutionContext, meterbook: MeterbookWorkspace, stripe: StripeResource
) -> MaterializeResult:
    gateway = stripe.gateway()
    with meterbook.warehouse() as con:
        result = sync_period(con, meterbook.catalog(), context.partition_key, gateway)
    metadata = result.metadata()
    result.raise_for_failures()
    return MaterializeResult(metadata={k: _value(v) for k, v in metadata.items()})


@asset(
    key="accounts_receivable",
    group_name="stripe",
    deps=["stripe_invoices"],
    description=(
        "Which invoices sent to Stripe are paid, open, overdue, uncollectible or void, with "
        "the amount paid and the next payment attempt. Read by the Stripe sync and every six "
        "hours by its schedule."
    ),
    kinds={"stripe", "duckdb"},
)
def accounts_receivable(
    context: AssetExecutionContext, meterbook: MeterbookWorkspace, stripe: StripeResource
) -> MaterializeResult:
    now = now_utc()
    with meterbook.warehouse() as con:
        result = pull_payment_status(con, stripe.gateway(), now)
        overdue = overdue_invoices(con, now)
    rows = [
        f"| {o.number} | {o.customer_id} | {o.currency} | {o.amount_remaining} | {o.due_at:%Y-%m-%d} |"
        for o in overdue[:50]
    ]
    table = "\n".join(
        ["| invoice | customer | currency | remaining | due |", "|---|---|---|---|---|", *rows]
    )
    return MaterializeResult(
        metadata={
            **{k: _value(v) for k, v in result.metadata().items()},
            "overdue": len(overdue),
            "overdue_invoices": MetadataValue.md(table if rows else "none overdue"),
        }
    )


def _value(v):
    return v if isinstance(v, int | float | str | bool) else MetadataValue.json(v)
