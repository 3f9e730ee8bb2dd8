"""The Stripe resource: a `StripeGateway` configured from the environment.

The key is read from `STRIPE_API_KEY` when a gateway is made, never stored in the resource's
config, so it cannot show in the Dagster UI, a run's config or an asset's metadata.
`STRIPE_API_BASE` points the gateway at a test server (default https://api.stripe.com).

How the assets use it (the lead's `assets.py`):

    @dg.asset(partitions_def=monthly_billing, ...)
    def stripe_invoices(context, meterbook: MeterbookWorkspace, stripe: StripeResource):
        gateway = stripe.gateway()
        with meterbook.warehouse() as con:
            result = sync_period(con, meterbook.catalog(), context.partition_key, gateway)
        context.add_output_metadata(result.metadata())
        result.raise_for_failures()

    # on a schedule, unpartitioned
    def stripe_accounts_receivable(context, meterbook, stripe: StripeResource):
        with meterbook.warehouse() as con:
            result = pull_payment_status(con, stripe.gateway(), now_utc())
            overdue = overdue_invoices(con, now_utc())
        context.add_output_metadata({**result.metadata(), "overdue": len(overdue)})

`sync_period` / `pull_payment_status` / `overdue_invoices` are in `integrations.stripe`.
"""

from __future__ import annotations

from dagster import ConfigurableResource

from integrations.stripe.client import RetryPolicy, StripeConfig, StripeGateway


class StripeResource(ConfigurableResource):
    """Stripe for meterbook; the key and base address come from the environment."""

    timeout_seconds: float = 30.0
    max_attempts: int = 5

    def gateway(self) -> StripeGateway:
        config = StripeConfig.from_env(
            timeout_seconds=self.timeout_seconds,
            retry=RetryPolicy(max_attempts=self.max_attempts),
        )
        return StripeGateway(config)
