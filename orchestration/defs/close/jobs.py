"""The month-end close and finalization, as finance launches them from the Dagster UI."""

from dagster import AssetSelection, define_asset_job

from orchestration.defs.close.assets import (
    billing_models,
    billing_windows,
    finalized_invoices,
    invoice_documents,
    rerated_finalized_months,
)
from orchestration.defs.ingest.jobs import INGEST_SELECTION

month_end_close = define_asset_job(
    "month_end_close",
    selection=INGEST_SELECTION
    | AssetSelection.assets(
        *rerated_finalized_months.keys,
        *billing_windows.keys,
        *billing_models.keys,
        *invoice_documents.keys,
    ),
    description=(
        "Month-end close: ingests, meters, rates and rebuilds the DRAFT invoices of the month, "
        "with their documents. Safe to re-run; finalized invoices never change."
    ),
)

finalize_invoices = define_asset_job(
    "finalize_invoices",
    selection=AssetSelection.assets(*finalized_invoices.keys),
    description=(
        "Finalize the month: numbers the draft invoices (gapless) and freezes them in the ledger. "
        "Run the month-end close first. Running it twice changes nothing."
    ),
)
