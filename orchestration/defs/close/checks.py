"""Reconciliation of the close: lines add up to invoices, every billable event is billed once,
usage lines carry the metered quantities, the ledger is gapless and matches its documents;
and the month's anomalies, a warning that never fails the close."""

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetRecordsFilter,
    MetadataValue,
    asset_check,
)

from orchestration.billing.invoice_checks import check_invoices
from orchestration.billing.invoice_json import decimal_text
from orchestration.billing.reconciliation import (
    check_events_in_one_line,
    check_ledger,
    check_meter_totals,
)
from orchestration.defs.close.assets import finalized_invoices, invoice_documents
from orchestration.defs.dbt.project import model_key
from orchestration.defs.resources import MeterbookWorkspace


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
    asset=model_key("fct_invoices"),
    description=(
        "Each invoice's lines add up to its subtotal, tax and total. Runs with every "
        "month-end close; if it fails, do not finalize the month."
    ),
)
def invoices_add_up(context, meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_invoices, meterbook.catalog(), _month(context))


@asset_check(
    asset=model_key("fct_invoice_lines"),
    description=(
        "Every billable usage event of the month is on exactly one invoice line: none "
        "missed, none counted twice. Runs with every month-end close; if it fails, do not "
        "finalize the month."
    ),
)
def events_in_one_line(context, meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_events_in_one_line, _month(context))


@asset_check(
    asset=model_key("fct_invoice_lines"),
    description=(
        "The quantities on usage lines are exactly the usage measured for the month. Runs "
        "with every month-end close; if it fails, do not finalize the month."
    ),
)
def lines_match_meters(context, meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_meter_totals, _month(context))


@asset_check(
    asset=finalized_invoices,
    description=(
        "Finalized invoice numbers have no gaps and every frozen invoice document matches "
        "its invoice. Runs with every finalization; if it fails, send nothing until it is "
        "fixed."
    ),
)
def ledger_consistent(meterbook: MeterbookWorkspace) -> AssetCheckResult:
    return _check(meterbook, check_ledger)


@asset_check(
    asset=invoice_documents,
    description=(
        "What to look at before finalizing: an invoice whose total moved by more than the "
        "catalog's anomaly_pct (50% unless set) against the same subscription's previous "
        "invoice, a charge that appeared or disappeared since that invoice, and a day whose "
        "usage of a meter is more than 3 times the median of the 7 days before it. Runs with "
        "every month-end close; it only warns, with the list, and never stops the close."
    ),
)
def no_anomalies_to_review(context, meterbook: MeterbookWorkspace) -> AssetCheckResult:
    # the documents step found them a moment ago in this run; finding them again cost 4-8 s of
    # a close at 10,000 customers (benchmarks/bench_backtest.py)
    found = _materialization_metadata(context, invoice_documents.key, _month(context))
    counts = {name: found[name].value for name in found if name.startswith("anomalies_")}
    pct = meterbook.catalog().settings.anomaly_pct
    return AssetCheckResult(
        passed=not any(counts.values()),
        severity=AssetCheckSeverity.WARN,  # an anomaly is for review: the close goes on
        metadata={**counts, "anomalies": found["anomalies"], "anomaly_pct": decimal_text(pct)},
    )


def _materialization_metadata(context, key, partition: str) -> dict:
    """The metadata of `key`'s latest materialization of `partition`: this run's."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return records[0].asset_materialization.metadata
