"""Stripe in Dagster: push the month's finalized invoices; pull payment status on a schedule
and show what is owed (after credit notes), how late, and the last reminder sent."""

from dagster import (
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from integrations.stripe import pull_payment_status, sync_period
from orchestration.billing.dunning.outbox import DunningOutbox, dunning_outbox_path
from orchestration.billing.dunning.receivables import read_receivables, receivables_view
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
        "Which invoices sent to Stripe are paid, open, overdue, uncollectible or void: per "
        "invoice what is still owed after credit notes, days overdue and the last payment "
        "reminder sent. Read by the Stripe sync, by dunning before it sends reminders, and "
        "every six hours by its schedule."
    ),
    kinds={"stripe", "duckdb"},
)
def accounts_receivable(
    context: AssetExecutionContext, meterbook: MeterbookWorkspace, stripe: StripeResource
) -> MaterializeResult:
    now = now_utc()
    with meterbook.warehouse() as con:
        result = pull_payment_status(con, stripe.gateway(), now)
        states = read_receivables(con)
    view = receivables_view(states, _last_reminders(meterbook.workspace.home), now)
    ar = view.metadata()
    return MaterializeResult(
        metadata={
            **{k: _value(v) for k, v in result.metadata().items()},
            "overdue": view.counts.get("overdue", 0),
            **{k: v for k, v in ar.items() if k.startswith("invoices_")},
            "owed": MetadataValue.json(ar["owed"]),
            "overdue_amount": MetadataValue.json(ar["overdue_amount"]),
            "receivables": MetadataValue.md(ar["receivables"]),
        }
    )


def _last_reminders(home) -> dict[str, tuple[str, str]]:
    """The last reminder sent per invoice, from the dunning outbox (none before dunning ran:
    the view does not create the file)."""
    path = dunning_outbox_path(home)
    return DunningOutbox(path).last_sent() if path.exists() else {}


def _value(v):
    return v if isinstance(v, int | float | str | bool) else MetadataValue.json(v)
