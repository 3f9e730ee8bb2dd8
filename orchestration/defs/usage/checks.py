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
    description=(
        "Every usage record received is accounted for (billed, duplicate, conflict, excluded, "
        "rejected or unmetered), per file and per day. Runs with every ingest; if it fails, "
        "the usage counts must not be used until it is fixed."
    ),
)
def fates_reconcile(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    with meterbook.reader() as con:
        passed, metadata = check_fates_reconcile(con, last_build_start(con))
    return AssetCheckResult(passed=passed, metadata=metadata)


@asset_check(
    asset=model_key("fct_event_fates"),
    description=(
        "No usage event (customer and event id) is billed twice. Runs with every ingest; if "
        "it fails, the usage counts must not be used until it is fixed."
    ),
)
def no_key_billed_twice(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    with meterbook.reader() as con:
        passed, metadata = check_no_key_billed_twice(con, last_build_start(con))
    return AssetCheckResult(passed=passed, metadata=metadata)
