"""Prepaid credits in Dagster: the wallet ledger as finance sees it after a close or a
finalization, with its balances, and the check that it reconciles (SPEC 7)."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from orchestration.billing.money import format_money
from orchestration.billing.wallets.checks import balance_summary
from orchestration.billing.wallets.ledger import ledger_entries
from orchestration.defs.dbt.project import model_key
from orchestration.defs.partitions import ONE_PARTITION_PER_RUN, monthly_billing
from orchestration.defs.resources import MeterbookWorkspace

SHOWN = 20  # customers in the balances table; the totals cover them all


@asset(
    key="wallet_ledger",
    group_name="billing",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    deps=[model_key("int_wallet_draws"), "finalized_invoices"],
    description=(
        "Prepaid credits: every grant, draw, expiry, rollover and void of every customer's "
        "wallet, and the balances they leave (promotional and paid). A draft month's entries "
        "are provisional and change with its close; finalization makes them permanent. "
        "Refreshed by the month-end close and by finalization."
    ),
    kinds={"duckdb", "python"},
)
def wallet_ledger(
    context: AssetExecutionContext, meterbook: MeterbookWorkspace
) -> MaterializeResult:
    with meterbook.reader() as con:
        entries = ledger_entries(con)
    summary = balance_summary(entries)
    month = context.partition_key
    return MaterializeResult(
        metadata={
            "entries": len(entries),
            "entries_this_month": sum(1 for e in entries if e["close_month"] == month),
            "provisional_entries": sum(1 for e in entries if e["provisional"]),
            "wallets": len(summary["per_customer"]),
            "balances_by_currency": MetadataValue.json(
                {
                    currency: {kind: format_money(v, currency) for kind, v in kinds.items()}
                    for currency, kinds in sorted(summary["totals"].items())
                }
            ),
            "balances": MetadataValue.md(_table(summary["per_customer"])),
        }
    )


def _table(per_customer: dict) -> str:
    rows = sorted(
        per_customer.items(), key=lambda kv: (-(kv[1]["promotional"] + kv[1]["paid"]), kv[0])
    )
    lines = ["| customer | currency | promotional | paid |", "|---|---|---|---|"]
    for (customer, currency), kinds in rows[:SHOWN]:
        promo, paid = (format_money(kinds[k], currency) for k in ("promotional", "paid"))
        lines.append(f"| {customer} | {currency} | {promo} | {paid} |")
    if len(rows) > SHOWN:
        lines.append(f"| … {len(rows) - SHOWN} more | | | |")
    return "\n".join(lines) if rows else "no wallet entries yet"
