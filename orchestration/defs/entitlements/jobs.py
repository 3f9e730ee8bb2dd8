"""What every ingest, daily refresh and close ends with: entitlements re-evaluated, the
snapshot published and alerts checked (SPEC 9)."""

from dagster import AssetSelection

from orchestration.defs.entitlements.assets import (
    current_windows,
    entitlement_snapshot,
    usage_alerts,
)

# the current periods' usage models are built with the usage models (INGEST_SELECTION)
ENTITLEMENT_SELECTION = AssetSelection.assets(current_windows, entitlement_snapshot, usage_alerts)
