"""Revenue recognition reconciles (SPEC 8): each a second computation compared with the
marts; if one fails, do not post the month's journal."""

from dagster import AssetCheckResult, asset_check

from orchestration.billing.revenue.checks import (
    check_balances,
    check_deferred,
    check_journal,
    check_schedule_sums,
)
from orchestration.defs.close.checks import _check, _month
from orchestration.defs.dbt.project import model_key
from orchestration.defs.resources import MeterbookWorkspace


@asset_check(
    asset=model_key("fct_revenue_schedule"),
    description=(
        "Every finalized line's schedule adds up to its amount to the cent, its credit "
        "notes' reversals to minus what each credited, a voided invoice's reversal to minus "
        "what the line still stood for, and no more paid credits leave deferred revenue "
        "than were bought."
    ),
)
def schedule_sums_to_lines(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_schedule_sums)


@asset_check(
    asset=model_key("fct_revenue_rollforward"),
    description=(
        "For every line at the month's end, recognized to date + deferred = billed - "
        "credited by credit notes (what was recognized before its invoice is unbilled), and "
        "the lines' deferred and unbilled balances add up to the roll-forward's closing "
        "balances per customer."
    ),
)
def rollforward_matches_lines(context, meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_balances, _month(context))


@asset_check(
    asset=model_key("fct_revenue_rollforward"),
    description=(
        "No customer's deferred revenue is below zero, and none is left for a customer with "
        "no service day ahead and no paid credits left."
    ),
)
def deferred_never_negative(context, meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_deferred, _month(context))


@asset_check(
    asset=model_key("fct_revenue_journal"),
    description=(
        "Every journal day balances per currency (debits = credits), and the month's journal "
        "moves deferred and unbilled revenue and revenue by what the roll-forward says."
    ),
)
def journal_balances(context, meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_journal, _month(context))
