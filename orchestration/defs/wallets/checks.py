"""The wallet ledger reconciles: no balance below zero, draws equal the invoices' credits."""

from dagster import AssetCheckResult, asset_check

from orchestration.billing.wallets.checks import check_wallets
from orchestration.defs.close.checks import _check, _month
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.defs.wallets.assets import wallet_ledger


@asset_check(
    asset=wallet_ledger,
    description=(
        "Every wallet balance is the sum of its entries and never went below zero, and each "
        "invoice of the month shows exactly the credits its wallet drew (promotional credit "
        "lines, paid credits applied). If it fails, do not finalize the month."
    ),
)
def wallets_reconcile(context, meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_wallets, _month(context))
