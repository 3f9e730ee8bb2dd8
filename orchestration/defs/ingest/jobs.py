"""The ingest job: new landing files in, every event given its fate."""

from dagster import AssetSelection, define_asset_job

from orchestration.defs.catalog.assets import pricing_catalog
from orchestration.defs.entitlements.jobs import ENTITLEMENT_SELECTION
from orchestration.defs.ingest.assets import raw_events
from orchestration.defs.usage.assets import usage_models

# every job that bills starts here: what landed, the catalog, and each event's fate
INGEST_SELECTION = AssetSelection.assets(
    *raw_events.keys, *pricing_catalog.keys, *usage_models.keys
)

ingest_landing_files = define_asset_job(
    "ingest_landing_files",
    selection=INGEST_SELECTION | ENTITLEMENT_SELECTION,
    description=(
        "Reads newly arrived usage files and sorts every event: billable, duplicate, excluded "
        "or rejected, with the reason, then re-evaluates entitlements and usage alerts. Run it "
        "to see usage before the close; the close runs it too."
    ),
)
