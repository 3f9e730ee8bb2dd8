"""Revenue recognition as finance launches it from the Dagster UI, after finalization."""

from dagster import AssetSelection, define_asset_job

from orchestration.defs.revenue.assets import revenue_models

recognize_revenue = define_asset_job(
    "recognize_revenue",
    selection=AssetSelection.assets(*revenue_models.keys),
    description=(
        "Revenue for a calendar month (ASC 606): schedules every finalized line by day, and "
        "builds the month's deferred and unbilled roll-forwards and its journal. Run it after "
        "finalize_invoices (for October: once October's invoices, dated November 1, are "
        "finalized); running it again changes nothing."
    ),
)
