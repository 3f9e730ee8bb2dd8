"""Reconciliation of the usage stage, as asset checks on the fates: each build checks what it
read (orchestration/billing/usage_checks.py); `meterbook verify` checks everything."""

from dagster import AssetCheckResult, asset_check

from orchestration.billing.usage_checks import (
    check_fates_reconcile,
    check_no_key_billed_twice,
    last_build_start,
)
from orchestration.defs.dbt.project import model_key
from orchestration.defs.resources import MeterbookWorkspace


@asset_check(
    asset=model_key("fct_event_fates"),
    description="Lines read = sum of fates, per file and per event day (what the build read).",
)
def fates_reconcile(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    with meterbook.reader() as con:
        passed, metadata = check_fates_reconcile(con, last_build_start(con))
    return AssetCheckResult(passed=passed, metadata=metadata)


@asset_check(
    asset=model_key("fct_event_fates"),
    description="No (customer_id, event_id) key is billable twice (keys the build read).",
)
def no_key_billed_twice(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    with meterbook.reader() as con:
        passed, metadata = check_no_key_billed_twice(con, last_build_start(con))
    return AssetCheckResult(passed=passed, metadata=metadata)
