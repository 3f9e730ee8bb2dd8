"""The month-end close and finalization, as finance launches them from the Dagster UI."""

from dagster import AssetSelection, define_asset_job

from orchestration.defs.close.assets import (
    billing_models,
    billing_windows,
    finalized_invoices,
    invoice_documents,
    rerated_finalized_months,
)
from orchestration.defs.entitlements.jobs import ENTITLEMENT_SELECTION
from orchestration.defs.ingest.jobs import INGEST_SELECTION
from orchestration.defs.leakage.assets import revenue_leakage
from orchestration.defs.wallets.assets import wallet_ledger

month_end_close = define_asset_job(
    "month_end_close",
    selection=INGEST_SELECTION
    | AssetSelection.assets(
        *rerated_finalized_months.keys,
        *billing_windows.keys,
        *billing_models.keys,
        *invoice_documents.keys,
        *wallet_ledger.keys,
        *revenue_leakage.keys,
    )
    | ENTITLEMENT_SELECTION,
    description=(
        "Month-end close: counts the month's usage, draws prepaid credits and builds its draft "
        "invoices and their documents, ready for review, with the usage that bills nothing "
        "(revenue leakage) and the invoices that moved unusually (anomalies). Run it once the month has ended, and again whenever late "
        "usage or a catalog fix arrives; finalized invoices never change."
    ),
)

finalize_invoices = define_asset_job(
    "finalize_invoices",
    selection=AssetSelection.assets(*finalized_invoices.keys, *wallet_ledger.keys),
    description=(
        "Finalize the month: gives the reviewed draft invoices their numbers (no gaps) and "
        "freezes them with the credits their wallets drew. Run it after the month-end close, once the drafts are reviewed; running "
        "it twice changes nothing."
    ),
)
