"""Revenue recognition in Dagster (SPEC 8): the schedule, billings, roll-forward and journal
dbt models for one calendar month, built from the ledger after finalization, with the
month's recognized, deferred and unbilled totals as metadata."""

from decimal import Decimal

from dagster import AssetExecutionContext, MetadataValue, Output
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.billing.money import format_money
from orchestration.billing.month import BillingMonth
from orchestration.defs.dbt.project import (
    REVENUE_SELECT,
    build_models,
    ensure_manifest,
    translator,
)
from orchestration.defs.partitions import ONE_PARTITION_PER_RUN, monthly_billing
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.warehouse.models import relation

TOTALS = ("recognized", "deferred_closing", "unbilled_closing")


@dbt_assets(
    manifest=ensure_manifest(),
    select=REVENUE_SELECT,
    name="revenue_models",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    dagster_dbt_translator=translator,
)
def revenue_models(
    context: AssetExecutionContext, dbt: DbtCliResource, meterbook: MeterbookWorkspace
):
    """The revenue schedule of every finalized line and the month's roll-forward and journal."""
    month = context.partition_key
    # dbt holds the warehouse while it builds: the figures are read once it is done
    events = list(build_models(context, dbt, meterbook, {"close_month": month}))
    with meterbook.reader() as con:
        extra = _metadata(con, month)
    for event in events:
        # a model's Output is named after its asset key (one-part keys: the model's name)
        if isinstance(event, Output) and event.output_name in extra:
            event = event.with_metadata({**event.metadata, **extra[event.output_name]})
        yield event


def _metadata(con, month: str) -> dict[str, dict]:
    """Per model: the month's figures finance looks for first."""
    rows = con.execute(
        f"SELECT currency, {', '.join(f'sum({t})' for t in TOTALS)}, count(*)"
        f" FROM {relation('fct_revenue_rollforward')} WHERE revenue_month = ?"
        " GROUP BY ALL ORDER BY ALL",
        [month],
    ).fetchall()
    totals = {
        currency: {t: format_money(v, currency) for t, v in zip(TOTALS, values, strict=True)}
        for currency, *values, _ in rows
    }
    first, end = BillingMonth.parse(month).first_day, BillingMonth.parse(month).end
    lines, schedule_rows, month_rows = con.execute(
        f"SELECT (SELECT count(*) FROM {relation('int_revenue_lines')}), count(*),"
        " count(*) FILTER (WHERE revenue_date >= ? AND revenue_date < ?)"
        f" FROM {relation('fct_revenue_schedule')}",
        [first, end],
    ).fetchone()
    journal = con.execute(
        f"SELECT currency, sum(debit), sum(credit), count(*) FROM {relation('fct_revenue_journal')}"
        " WHERE revenue_month = ? GROUP BY ALL ORDER BY ALL",
        [month],
    ).fetchall()
    return {
        "fct_revenue_rollforward": {
            "totals_by_currency": MetadataValue.json(totals),
            "customers": sum(r[-1] for r in rows),
        },
        "fct_revenue_schedule": {
            "finalized_lines": lines,
            "schedule_rows": schedule_rows,
            "rows_per_line": float(round(Decimal(schedule_rows) / lines, 2)) if lines else 0.0,
            "rows_this_month": month_rows,
            "totals_by_currency": MetadataValue.json(totals),
        },
        "fct_revenue_journal": {
            "journal_lines": sum(r[3] for r in journal),
            "debits_by_currency": MetadataValue.json(
                {c: format_money(d, c) for c, d, _, _ in journal}
            ),
            "credits_by_currency": MetadataValue.json(
                {c: format_money(k, c) for c, _, k, _ in journal}
            ),
        },
    }
