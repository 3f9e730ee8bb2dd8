"""The month-end close in Dagster: billing windows, invoice documents, finalization, checks."""

from collections import defaultdict
from decimal import Decimal

from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
    multi_asset,
)

from orchestration.defs.close.adjustments import (
    months_to_rerate,
    record_rerated_usage,
    write_adjustment_lines,
)
from orchestration.defs.close.billing_windows import write_billing_windows
from orchestration.defs.close.documents import render_documents
from orchestration.defs.close.freshness import (
    finalize_built_month,
    mark_built,
    record_build_inputs,
    usage_watermark,
)
from orchestration.defs.close.ledger import invoices_with_ledger
from orchestration.defs.close.lineage import (
    check_events_in_one_line,
    check_invoices,
    check_ledger,
    check_meter_totals,
)
from orchestration.defs.partitions import ONE_PARTITION_PER_RUN, monthly_billing
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.defs.transform.assets import source_keys
from orchestration.defs.transform.dbt_runner import dbt_args, run_dbt
from orchestration.money import format_money
from orchestration.workspace import now_utc


@multi_asset(
    name="billing_windows",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    specs=[
        AssetSpec(
            key,
            group_name="billing",
            # after metering, so a re-rate of a finalized month sees the late events
            deps=[*source_keys("meterbook_catalog"), AssetKey("int_events_metered")],
            description=(
                "The subscription periods that end in the close month, cut into segments (plan "
                "versions, price overrides, trials, starts and ends), the time windows metering "
                "aggregates over, and adjustment lines for late usage of finalized months "
                f"(table {key.path[-1]})."
            ),
            kinds={"duckdb", "python"},
        )
        for key in source_keys("meterbook_billing")
    ],
)
def billing_windows(context: AssetExecutionContext, meterbook: MeterbookWorkspace):
    month = context.partition_key
    catalog = meterbook.catalog()
    rerated = _rerate_finalized_months(context, meterbook, catalog, month)
    with meterbook.warehouse() as con:
        adjustments = write_adjustment_lines(con, catalog, month)
        write_billing_windows(con, catalog, month)
        build = record_build_inputs(con, catalog, month, now_utc(), adjustments.written)
        segments, windows = con.execute(
            "SELECT (SELECT count(*) FROM meterbook_billing.segments WHERE close_month = $1),"
            " (SELECT count(*) FROM meterbook_billing.meter_windows WHERE close_month = $1)",
            [month],
        ).fetchone()
    summary = {
        "segments": segments,
        "meter_windows": windows,
        "rerated_finalized_months": MetadataValue.json(rerated),
        "adjustment_lines": len(adjustments.written),
        "late_usage_without_next_invoice": len(adjustments.unbillable),
        "built_from_read_seq": build.usage_read_seq,
    }
    for key in sorted(context.selected_asset_keys, key=lambda k: k.path):
        yield MaterializeResult(asset_key=key, metadata=summary)


def _rerate_finalized_months(
    context, meterbook: MeterbookWorkspace, catalog, month: str
) -> list[str]:
    """Late events for finalized months: rebuild those months' ratings to diff against the ledger.

    The finalized invoices themselves never change (they live in the ledger); only the shadow
    drafts of those months are rebuilt, so the difference can be billed as an adjustment.
    """
    with meterbook.warehouse() as con:
        months = months_to_rerate(con, month)
    for source in months:
        context.log.info(f"late events for finalized {source}: re-rating it to find the difference")
        with meterbook.warehouse() as con:
            write_billing_windows(con, catalog, source)
        with meterbook.exclusive() as warehouse_path:
            run_dbt(warehouse_path, dbt_args("build", "tag:billing"), {"close_month": source})
        with meterbook.warehouse() as con:
            record_rerated_usage(con, source, now_utc(), watermark=usage_watermark(con))
    return months


@asset(
    key="invoice_documents",
    group_name="billing",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    deps=["fct_invoices", "fct_invoice_lines", "fct_daily_meter_usage"],
    description=(
        "One HTML invoice per invoice of the month in documents/<month>/: customer, period, lines "
        "with their tier arithmetic, a daily usage chart per meter, totals and tax."
    ),
    kinds={"html"},
)
def invoice_documents(
    context: AssetExecutionContext, meterbook: MeterbookWorkspace
) -> MaterializeResult:
    month = context.partition_key
    catalog = meterbook.catalog()
    with meterbook.warehouse() as con:
        document = invoices_with_ledger(con, month)
        paths = render_documents(con, catalog, month, meterbook.workspace.documents_dir, document)
        previous = _previous_totals(con, month)
        mark_built(con, month)  # the billing models ran after billing_windows: drafts complete
    return MaterializeResult(metadata=invoice_metadata(document, previous, len(paths)))


def invoice_metadata(document: dict, previous: dict[str, Decimal], documents: int) -> dict:
    """Count, total billed per currency, and the largest changes against the previous month."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    changes = []
    for invoice in document["invoices"]:
        total = Decimal(invoice["total"])
        totals[invoice["currency"]] += total
        before = previous.get(invoice["subscription_id"])
        if before is not None:
            changes.append((abs(total - before), invoice, before))
    changes.sort(key=lambda c: (-c[0], c[1]["subscription_id"]))
    rows = [
        f"| {inv['customer_id']} | {inv['currency']} | {format_money(before, inv['currency'])} | {inv['total']} |"
        for _, inv, before in changes[:10]
    ]
    table = "\n".join(
        ["| customer | currency | previous | this month |", "|---|---|---|---|", *rows]
    )
    return {
        "invoices": len(document["invoices"]),
        "documents": documents,
        "total_billed": MetadataValue.json(
            {c: format_money(t, c) for c, t in sorted(totals.items())}
        ),
        "largest_changes": MetadataValue.md(table if rows else "no previous month to compare"),
    }


def _previous_totals(con, month: str) -> dict[str, Decimal]:
    year, mon = map(int, month.split("-"))
    before = f"{year - (mon == 1)}-{(mon - 2) % 12 + 1:02d}"
    try:
        rows = con.execute(
            "SELECT subscription_id, sum(total) FROM marts.fct_invoices WHERE close_month = ? GROUP BY 1",
            [before],
        ).fetchall()
    except Exception:  # noqa: BLE001 (no marts yet: nothing to compare with)
        return {}
    return {sub: total for sub, total in rows}


@asset(
    key="finalized_invoices",
    group_name="billing",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    deps=["fct_invoices"],
    description=(
        "The month's invoices, numbered gaplessly (PREFIX-YYYY-NNNNNN) and frozen in the append-only "
        "ledger. Re-running it is a no-op; nothing re-materialized later changes them."
    ),
    kinds={"duckdb"},
)
def finalized_invoices(
    context: AssetExecutionContext, meterbook: MeterbookWorkspace
) -> MaterializeResult:
    month = context.partition_key
    catalog = meterbook.catalog()
    with meterbook.warehouse() as con:
        result = finalize_built_month(con, catalog, month, now_utc())
        document = invoices_with_ledger(con, month)
        render_documents(con, catalog, month, meterbook.workspace.documents_dir, document)
    numbers = [number for _, number in result.numbered]
    return MaterializeResult(
        metadata={
            "newly_finalized": len(numbers),
            "already_finalized": result.already_finalized,
            "numbers": MetadataValue.json(numbers[:50]),
            **invoice_metadata(document, {}, 0),
        }
    )


def _month(context) -> str:
    # checks have no partitions of their own; they check the partition their run built
    return context.run.tags["dagster/partition"]


def _check(meterbook: MeterbookWorkspace, fn, *args) -> AssetCheckResult:
    with meterbook.reader() as con:
        passed, metadata = fn(con, *args)
    return AssetCheckResult(passed=passed, metadata=_plain(metadata))


def _plain(metadata: dict) -> dict:
    return {
        k: v if isinstance(v, int | float | str | bool) else MetadataValue.json(v)
        for k, v in metadata.items()
    }


@asset_check(
    asset=AssetKey("fct_invoices"),
    description="Lines add up to invoices; subtotal, tax and total agree.",
)
def invoices_add_up(context, meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_invoices, meterbook.catalog(), _month(context))


@asset_check(
    asset=AssetKey("fct_invoice_lines"),
    description="Every billable event of the month is in exactly one usage line.",
)
def events_in_one_line(context, meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_events_in_one_line, _month(context))


@asset_check(
    asset=AssetKey("fct_invoice_lines"),
    description="Usage lines carry exactly the metered quantities.",
)
def lines_match_meters(context, meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_meter_totals, _month(context))


@asset_check(
    asset=AssetKey("finalized_invoices"),
    description="Ledger numbers are gapless; frozen documents match their rows.",
)
def ledger_consistent(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_ledger)


ASSETS = [billing_windows, invoice_documents, finalized_invoices]
CHECKS = [invoices_add_up, events_in_one_line, lines_match_meters, ledger_consistent]
