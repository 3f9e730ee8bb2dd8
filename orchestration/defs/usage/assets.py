"""The usage stage: every event's fate, metered events, and usage per UTC day (dbt models)."""

from dagster import AssetExecutionContext, AssetObservation
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.defs.dbt.project import (
    BILLING_SELECT,
    DAILY_SELECT,
    ENTITLEMENTS_SELECT,
    USAGE_SELECT,
    build_models,
    ensure_manifest,
    model_key,
    rebuild_models,
    translator,
)
from orchestration.defs.partitions import ONE_PARTITION_PER_RUN, daily_usage
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.warehouse.usage import fates_build_summary, fates_state


@dbt_assets(
    manifest=ensure_manifest(),
    # the current periods' usage (entitlements) too: one dbt build, not two (~4 s a run)
    select=f"{USAGE_SELECT} {ENTITLEMENTS_SELECT}",
    exclude=f"{DAILY_SELECT} {BILLING_SELECT}",
    name="usage_models",
    dagster_dbt_translator=translator,
)
def usage_models(
    context: AssetExecutionContext, dbt: DbtCliResource, meterbook: MeterbookWorkspace
):
    """Event fates and metered events: the events read since the last build are given
    theirs, and the current periods' usage is counted (entitlements); a change of meters, exclusions or customers fates every event again and rebuilds
    the daily usage of every day."""
    with meterbook.reader() as con:
        before = fates_state(con)
    yield from build_models(context, dbt, meterbook, None)
    with meterbook.reader() as con:
        summary = fates_build_summary(con, before)
    context.log.info(f"fates: {summary['mode']} ({summary.get('reason', '')})")
    if summary.get("catalog_changed"):
        context.log.info("the metering catalog changed: rebuilding the daily usage of every day")
        rebuild_models(context, dbt, meterbook, DAILY_SELECT, {})
    yield AssetObservation(asset_key=model_key("int_events_fated"), metadata=summary)


@dbt_assets(
    manifest=ensure_manifest(),
    select=DAILY_SELECT,
    name="daily_usage_models",
    partitions_def=daily_usage,
    backfill_policy=ONE_PARTITION_PER_RUN,
    dagster_dbt_translator=translator,
)
def daily_usage_models(
    context: AssetExecutionContext, dbt: DbtCliResource, meterbook: MeterbookWorkspace
):
    """Usage per customer x meter x UTC day, for the month-so-far views."""
    window = context.partition_time_window
    partition = {
        "min_date": window.start.date().isoformat(),
        "max_date": window.end.date().isoformat(),
    }
    yield from build_models(context, dbt, meterbook, partition)
