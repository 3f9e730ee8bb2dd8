"""The month-end close in Dagster: billing windows, invoice documents, finalization, checks."""

import logging
from collections import defaultdict
from decimal import Decimal

from dagster import (
    AssetExecutionContext,
    AssetSpec,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)
from dagster_dbt import DbtCliResource, dbt_assets

from orchestration.billing.adjustments import (
    late_event_customers,
    record_rerated_usage,
    rerate_scope,
    write_adjustment_lines,
)
from orchestration.billing.anomalies import Anomalies, find_anomalies
from orchestration.billing.documents import render_documents
from orchestration.billing.freshness import (
    finalize_built_month,
    mark_built,
    record_build_inputs,
    usage_watermark,
)
from orchestration.billing.ledger import invoices_with_ledger
from orchestration.billing.money import format_money
from orchestration.billing.month import BillingMonth
from orchestration.billing.windows import write_billing_windows
from orchestration.defs.dbt.project import (
    BILLING_SELECT,
    build_models,
    ensure_manifest,
    model_key,
    rebuild_models,
    source_keys,
    translator,
)
from orchestration.defs.partitions import ONE_PARTITION_PER_RUN, monthly_billing
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.warehouse.models import model_exists, relation
from orchestration.workspace import now_utc


@asset(
    key="rerated_finalized_months",
    group_name="billing",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    # after metering, so a re-rate of a finalized month sees the late events
    deps=[*source_keys("meterbook_catalog"), model_key("int_events_metered")],
    description=(
        "Usage that arrived after its month was finalized: those months are priced again "
        "(their invoices never change) so that this month's close bills the difference as "
        "adjustment lines. A step of the month-end close; nothing to run by hand."
    ),
    kinds={"dbt", "python"},
)
def rerated_finalized_months(
    context: AssetExecutionContext, dbt: DbtCliResource, meterbook: MeterbookWorkspace
) -> MaterializeResult:
    month = context.partition_key
    catalog = meterbook.catalog()
    with meterbook.warehouse() as con:
        late = late_event_customers(con, month)
        scopes = {source: rerate_scope(con, catalog, source, ids) for source, ids in late.items()}
    for source, subscriptions in scopes.items():
        context.log.info(
            f"late events for finalized {source}: re-rating its {len(subscriptions)} "
            "subscription(s) they bill to, to find the difference"
        )
        with meterbook.warehouse() as con:
            write_billing_windows(con, catalog, source, subscriptions)
        rebuild_models(context, dbt, meterbook, BILLING_SELECT, {"close_month": source})
        with meterbook.warehouse() as con:
            record_rerated_usage(
                con, source, now_utc(), watermark=usage_watermark(con), subscriptions=subscriptions
            )
    rerated = {source: len(subs) for source, subs in scopes.items()}
    return MaterializeResult(
        metadata={
            "rerated_months": MetadataValue.json(sorted(rerated)),
            "count": len(rerated),
            "rerated_subscriptions": MetadataValue.json(rerated),
        }
    )


@multi_asset(
    name="billing_windows",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    specs=[
        AssetSpec(
            key,
            group_name="billing",
            # after the re-rate, which needs the finalized months' windows rebuilt before
            # this month's adjustments can diff them against the ledger
            deps=[*source_keys("meterbook_catalog"), rerated_finalized_months.key],
            description=(
                "What each invoice of the month covers: the subscription periods ending in the "
                "month, split where the plan, a price override or a trial changes, the usage "
                "windows to count, and the late-usage adjustments for finalized months "
                f"(the {key.path[-1]} table). A step of the month-end close."
            ),
            kinds={"duckdb", "python"},
        )
        for key in source_keys("meterbook_billing")
    ],
)
def billing_windows(context: AssetExecutionContext, meterbook: MeterbookWorkspace):
    month = context.partition_key
    catalog = meterbook.catalog()
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
        "adjustment_lines": len(adjustments.written),
        "late_usage_without_next_invoice": len(adjustments.unbillable),
        "built_from_read_seq": build.usage_read_seq,
    }
    for key in sorted(context.selected_asset_keys, key=lambda k: k.path):
        yield MaterializeResult(asset_key=key, metadata=summary)


@dbt_assets(
    manifest=ensure_manifest(),
    select=BILLING_SELECT,
    name="billing_models",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    dagster_dbt_translator=translator,
)
def billing_models(
    context: AssetExecutionContext, dbt: DbtCliResource, meterbook: MeterbookWorkspace
):
    """Meter quantities per segment, rated lines and draft invoices for one close month."""
    yield from build_models(context, dbt, meterbook, {"close_month": context.partition_key})


@asset(
    key="invoice_documents",
    group_name="billing",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    deps=["fct_invoices", "fct_invoice_lines", "fct_daily_meter_usage"],
    description=(
        "The month's invoice documents in documents/<month>/, one per invoice, as the customer "
        "will see it: seller and customer, period, lines with their arithmetic, usage charts, "
        "totals and tax. Rebuilt by every month-end close, so drafts can be reviewed before "
        "the month is finalized."
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
        paths = _render(context, meterbook, con, catalog, document)
        previous = _previous_totals(con, month)
        anomalies = find_anomalies(con, month, catalog.settings.anomaly_pct, document)
        mark_built(con, month)  # the billing models ran after billing_windows: drafts complete
    return MaterializeResult(
        metadata={
            **invoice_metadata(document, previous, len(paths)),
            **document_metadata(context, paths.counts),
            **anomaly_metadata(anomalies),
        }
    )


def anomaly_metadata(anomalies: Anomalies, limit: int = 50) -> dict:
    """The anomalies' counts, and their lines (the first `limit`) to read in the UI."""
    lines = anomalies.lines()
    shown = lines[:limit]
    if len(lines) > limit:
        shown.append(f"... and {len(lines) - limit} more (meterbook leakage lists them all)")
    return {
        **{f"anomalies_{name}": count for name, count in anomalies.counts().items()},
        # a code block: ids and group values are shown as they are, never read as markdown
        "anomalies": MetadataValue.md("\n".join(["```", *shown, "```"]) if lines else "none"),
    }


# Long document runs (thousands of PDFs) report here as well as to the run's log: the CLI
# shows this logger on the terminal, where the run's own logs are kept out (logs/<job>.log).
PROGRESS = logging.getLogger("meterbook.progress")


def _render(context: AssetExecutionContext, meterbook, con, catalog, document: dict):
    """The partition's documents, reporting progress to the run's log and the terminal."""

    def say(message: str) -> None:
        context.log.info(message)
        PROGRESS.info(message)

    folder = meterbook.workspace.documents_dir
    return render_documents(con, catalog, context.partition_key, folder, document, progress=say)


def document_metadata(context: AssetExecutionContext, counts) -> dict:
    """What the run did to the documents; `documents` is the line the CLI prints. A PDF that
    could not be printed is a warning, and the next run that can print completes it."""
    if counts.pdf_missing:
        context.log.warning(counts.summary())
    return {
        "documents": counts.summary(),
        "html_written": counts.html_written,
        "pdf_written": counts.pdf_written,
        "pdf_completed": counts.pdf_completed,
        "pdf_missing": counts.pdf_missing,
    }


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


def _previous_totals(con, close_month: str) -> dict[str, Decimal]:
    before = str(BillingMonth.parse(close_month).previous())
    if not model_exists(con, "fct_invoices"):
        return {}  # the first close: nothing to compare with
    rows = con.execute(
        f"SELECT subscription_id, sum(total) FROM {relation('fct_invoices')}"
        " WHERE close_month = ? GROUP BY 1",
        [before],
    ).fetchall()
    return {sub: total for sub, total in rows}


@asset(
    key="finalized_invoices",
    group_name="billing",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    deps=["fct_invoices"],
    description=(
        "The month's invoices, numbered without gaps (PREFIX-YYYY-NNNNNN) and frozen in the "
        "ledger: what customers and Stripe receive. Run the finalize job once the month's "
        "drafts are reviewed; running it again changes nothing, and no later run alters them."
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
        rendered = _render(context, meterbook, con, catalog, document)
    numbers = [number for _, number in result.numbered]
    return MaterializeResult(
        metadata={
            "newly_finalized": len(numbers),
            "already_finalized": result.already_finalized,
            "numbers": MetadataValue.json(numbers[:50]),
            **invoice_metadata(document, {}, 0),
            **document_metadata(context, rendered.counts),
        }
    )
