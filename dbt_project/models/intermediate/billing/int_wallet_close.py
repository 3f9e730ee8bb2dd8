"""Prepaid credits at close (SPEC 7), for the month being closed: every wallet entry of the close month (grant, draw,
expire, rollover, void), the credit lines it puts on the invoices (promotional_credit,
credit_purchase) and each invoice's paid credits (credits_applied), as rows of one table
told apart by record_type (orchestration/billing/wallets/load.py, COLUMNS).

A close starts from the entries of earlier months: int_wallet_draws keeps every month's
(this model's rows, month by month), the permanent ledger the finalized months'. It is read
by name, not ref: it is built from this model. The arithmetic is
orchestration/billing/wallets (close.close_wallets); this model only hands it the warehouse."""

import os

from orchestration.billing.wallets import close, load


def model(dbt, session):
    dbt.config(materialized="table")
    # every ref and source spelled out here: dbt learns a Python model's dependencies by
    # reading its dbt.ref / dbt.source calls, so they cannot move into a shared helper
    rel = load.views(
        session,
        invoices=dbt.ref("int_billing_invoices"),
        segments=dbt.ref("stg_billing__segments"),
        lines=dbt.ref("int_billing_lines"),
        coverage=dbt.ref("int_wallet_credit_coverage"),
        line_kinds=dbt.ref("line_kinds"),
        discounts=dbt.ref("stg_catalog__discounts"),
        events=dbt.ref("int_events_metered"),
        grants=dbt.source("meterbook_catalog", "credit_grants"),
        plan_grants=dbt.source("meterbook_catalog", "plan_credit_grants"),
        top_ups=dbt.source("meterbook_catalog", "auto_top_ups"),
        subscriptions=dbt.source("meterbook_catalog", "subscriptions"),
        plans=dbt.source("meterbook_catalog", "plans"),
        drafts=load.sibling(dbt.this, "int_wallet_draws"),
    )
    tables, made = [], []
    for month in load.close_months(session, rel, os.environ.get("METERBOOK_CLOSE_MONTH", "")):
        inputs = load.close_inputs(session, rel, month, rebuilt=made)
        inputs = load.with_lines(session, rel, month, inputs)
        result = close.close_wallets(inputs, load.coverage(session, rel, month))
        made += result.entries  # a build of every month: the next month starts from these
        tables.append(load.result_table(month, result))
    return load.concat(tables)
