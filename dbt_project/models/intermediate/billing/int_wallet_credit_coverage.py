"""Credit-priced usage (SPEC 7): the units of each per_unit line with a credit_price that
promotional credits cover, grant by grant. int_usage_lines_priced prices them.

The arithmetic is orchestration/billing/wallets (close.credit_coverage); this model only
hands it the warehouse. Partitioned like every billing model: METERBOOK_CLOSE_MONTH."""

import os

import pyarrow as pa

from orchestration.billing.wallets import close, load


def model(dbt, session):
    dbt.config(materialized="table")
    # every ref and source spelled out here: dbt learns a Python model's dependencies by
    # reading its dbt.ref / dbt.source calls, so they cannot move into a shared helper
    rel = load.views(
        session,
        invoices=dbt.ref("int_billing_invoices"),
        segments=dbt.ref("stg_billing__segments"),
        rated=dbt.ref("int_usage_lines_rated"),
        events=dbt.ref("int_events_metered"),
        grants=dbt.source("meterbook_catalog", "credit_grants"),
        plan_grants=dbt.source("meterbook_catalog", "plan_credit_grants"),
        top_ups=dbt.source("meterbook_catalog", "auto_top_ups"),
        subscriptions=dbt.source("meterbook_catalog", "subscriptions"),
        plans=dbt.source("meterbook_catalog", "plans"),
        drafts=load.sibling(dbt.this, "int_wallet_draws"),
    )
    rows = []
    for month in load.close_months(session, rel, os.environ.get("METERBOOK_CLOSE_MONTH", "")):
        inputs = load.close_inputs(session, rel, month)
        usage = load.credit_priced_usage(session, rel, month, inputs)
        covered = close.credit_coverage(inputs, usage)
        for (invoice_id, key), per_grant in sorted(covered.items()):
            for grant_id, units in per_grant:
                rows.append((month, invoice_id, key, grant_id, units))
    schema = pa.schema(
        [
            ("close_month", pa.string()),
            ("invoice_id", pa.string()),
            ("usage_key", pa.string()),
            ("grant_id", pa.string()),
            ("units", pa.decimal128(38, 12)),
        ]
    )
    return pa.Table.from_pylist(
        [dict(zip(schema.names, r, strict=True)) for r in rows], schema=schema
    )
