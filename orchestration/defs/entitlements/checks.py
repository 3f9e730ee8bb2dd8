"""Entitlements reconcile (SPEC 9): what was published is what the usage models counted."""

from dagster import AssetCheckResult, asset_check

from orchestration.billing.entitlements.checks import check_days_add_up, check_snapshot
from orchestration.billing.entitlements.publish import read_snapshot
from orchestration.defs.close.checks import _check
from orchestration.defs.dbt.project import model_key
from orchestration.defs.resources import MeterbookWorkspace


@asset_check(
    asset=model_key("fct_current_period_usage"),
    description=(
        "For count and sum meters, each subscription's current-period quantity equals the sum "
        "of its days: the month-so-far chart and the entitlement agree."
    ),
)
def current_days_add_up(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_days_add_up)


@asset_check(
    asset="entitlement_snapshot",
    description=(
        "Every limit answer published says exactly what the usage model counted, and its "
        "access and remaining follow from its limit. If it fails, the API answers stale or "
        "wrong limits: look before trusting a denial."
    ),
)
def snapshot_matches_usage(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    snapshot = read_snapshot(meterbook.workspace.home)
    return _check(meterbook, check_snapshot, snapshot)
