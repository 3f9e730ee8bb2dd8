"""Replay closed months in a copy of the warehouse, under one catalog or another (SPEC 10).

A backtest never writes to the workspace's warehouse: the warehouse file is copied once (under
the workspace lock, so no close is half-written in it), and every month is rated again in the
copy with the same Python steps and dbt models as the close (`write_billing_windows`, then
the models tagged billing). Each month is replayed with the events the usage models had read
when its invoices were built (the finalization's watermark, or the drafts' build), so events
that arrived later are not in it, as they were not in what was billed.

Rating is the caller's: `Rate(warehouse, select, partition)` builds dbt models against the
copy (the Dagster job passes dbt; this module knows no dbt). The fates model is built first:
it fingerprints the catalog's meters, exclusions and customers and fates every event again
when they differ, so a candidate's changed meter re-meters the stored usage, and an unchanged
one costs nothing.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from orchestration.billing.ledger import draft_document, invoices_with_ledger
from orchestration.billing.month import BillingMonth
from orchestration.billing.windows import write_billing_windows
from orchestration.catalog.models import Catalog
from orchestration.catalog.tables import write_catalog_tables
from orchestration.sql import connect
from orchestration.warehouse.tables import table_exists

# dbt selections the replay builds: the fates (a no-op unless the catalog's meters differ),
# then one close month's billing models
FATES_SELECT = "int_events_fated"
BILLING_SELECT = "tag:billing"
# the invoice fields compared with what was billed, to the cent
COMPARED = ("subtotal", "discount_total", "tax_total", "total", "credits_applied", "amount_due")
# what the comparisons read of an invoice and of a line: only these are kept, because three
# months of 10,000 invoices are held three times over (billed, baseline, candidate)
INVOICE_KEPT = ("invoice_id", "number", "customer_id", "subscription_id", "currency", *COMPARED)
LINE_KEPT = (
    "line_id", "kind", "meter", "fee_code", "group", "description", "period_start",
    "period_end", "amount",
)  # fmt: skip

Rate = Callable[[Path, str, Mapping[str, str] | None], None]


class BacktestError(ValueError):
    """A backtest that cannot run as asked (months, catalog); the message says what to do."""


class BaselineMismatch(BacktestError):
    """The current catalog does not reproduce what was billed: `differences` says where."""

    def __init__(self, differences: list[dict[str, Any]]):
        self.differences = differences
        super().__init__(
            f"the current catalog does not reproduce what was billed: {len(differences)} "
            "invoice(s) "
            "differ, so a comparison with it would not be trustworthy (was the catalog edited "
            "after those months were closed?)"
        )


@dataclass(frozen=True)
class ReplayMonth:
    month: str
    read_seq: int  # events read up to here count; later ones were not in what was billed
    finalized: bool


def months_between(first: str, last: str) -> list[str]:
    """Every month from `first` to `last`, both included."""
    months = BillingMonth.parse(first).through(BillingMonth.parse(last))
    if not months:
        raise BacktestError(f"--from {first} is after --to {last}")
    return [str(month) for month in months]


def months_to_replay(con: duckdb.DuckDBPyConnection, first: str, last: str) -> list[ReplayMonth]:
    """The months with what they were built from; a month never closed is refused."""
    finalized = _read_seqs(
        con, "meterbook_ledger", "period_finalizations", "max(raw_read_seq)", "close_month"
    )
    built = _read_seqs(
        con, "meterbook_billing", "draft_builds", "max(usage_read_seq)", "close_month"
    )
    replay = []
    for month in months_between(first, last):
        if month in finalized:
            replay.append(ReplayMonth(month, finalized[month], True))
        elif month in built:
            replay.append(ReplayMonth(month, built[month], False))
        else:
            raise BacktestError(
                f"{month} was never closed, so nothing was billed to compare with: run "
                f"`meterbook close --period {month}` first, or backtest closed months only"
            )
    return replay


def _read_seqs(con, schema: str, table: str, column: str, key: str) -> dict[str, int]:
    if not table_exists(con, schema, table):
        return {}
    rows = con.execute(f"SELECT {key}, {column} FROM {schema}.{table} GROUP BY {key}").fetchall()
    return {month: int(seq) for month, seq in rows}


def billed_invoices(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, month: str
) -> list[dict[str, Any]]:
    """What month `month` billed: finalized invoices from the ledger, drafts otherwise (void
    ones left out: they bill nothing), each with its `period` and `plan_id`."""
    document = invoices_with_ledger(con, month)
    billed = [inv for inv in document["invoices"] if inv["status"] != "void"]
    return tag_invoices(billed, catalog, month)


def tag_invoices(invoices: list[dict], catalog: Catalog, month: str) -> list[dict[str, Any]]:
    """The invoices as the comparisons read them, with their month and plan in `catalog`."""
    plans = {s.id: s.plan for s in catalog.subscriptions}
    return [
        {
            **{key: inv.get(key) for key in INVOICE_KEPT},
            "lines": [{key: line.get(key) for key in LINE_KEPT} for line in inv["lines"]],
            "period": month,
            "plan_id": plans.get(inv["subscription_id"]),
        }
        for inv in invoices
    ]


def copy_warehouse(source: Path, destination: Path) -> None:
    """A copy of a DuckDB file no process has open (with its WAL, when there is one)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".wal"):
        target = Path(str(destination) + suffix)
        target.unlink(missing_ok=True)
        original = Path(str(source) + suffix)
        if original.exists():
            shutil.copyfile(original, target)


def replay_months(
    warehouse: Path,
    catalog: Catalog,
    months: list[ReplayMonth],
    rate: Rate,
    say: Callable[[str], None] = lambda _message: None,
) -> dict[str, list[dict[str, Any]]]:
    """Rate `months` in order in the warehouse copy at `warehouse` under `catalog`; returns
    each month's invoices (SPEC 5 shape, with `period` and `plan_id`)."""
    con = connect(warehouse)
    try:
        write_catalog_tables(con, catalog)
    finally:
        con.close()
    rate(warehouse, FATES_SELECT, None)
    invoices: dict[str, list[dict[str, Any]]] = {}
    for replay in months:
        say(f"rating {replay.month} (events read up to {replay.read_seq})")
        con = connect(warehouse)
        try:
            write_billing_windows(con, catalog, replay.month)
        finally:
            con.close()
        rate(
            warehouse,
            BILLING_SELECT,
            {"close_month": replay.month, "max_read_seq": str(replay.read_seq)},
        )
        con = connect(warehouse, read_only=True)
        try:
            drafts = draft_document(con, replay.month, None)["invoices"]
        finally:
            con.close()
        invoices[replay.month] = tag_invoices(drafts, catalog, replay.month)
    return invoices


def baseline_differences(
    billed: dict[str, list[dict]], replayed: dict[str, list[dict]]
) -> list[dict[str, Any]]:
    """Where the replay under the current catalog differs from what was billed: one row per
    invoice, with every reason. Empty: the baseline reproduces every invoice to the cent."""
    differences = []
    for month in sorted(billed):
        was = {inv["subscription_id"]: inv for inv in billed[month]}
        now = {inv["subscription_id"]: inv for inv in replayed.get(month, [])}
        for subscription in sorted(was.keys() | now.keys()):
            reasons = _invoice_differences(was.get(subscription), now.get(subscription))
            if not reasons:
                continue
            invoice = was.get(subscription) or now[subscription]
            billed_one = was.get(subscription, {})
            differences.append(
                {
                    "period": month,
                    "customer_id": invoice["customer_id"],
                    "subscription_id": subscription,
                    "invoice_id": billed_one.get("invoice_id"),
                    "number": billed_one.get("number"),
                    "reasons": reasons,
                }
            )
    return differences


def _invoice_differences(billed: dict | None, replayed: dict | None) -> list[str]:
    if billed is None:
        return [f"not billed, but the re-rate makes an invoice of {replayed['total']}"]
    if replayed is None:
        return [f"billed {billed['total']}, but the re-rate makes no invoice"]
    reasons = [
        f"{field} billed {billed[field]}, re-rated {replayed[field]}"
        for field in COMPARED
        if billed[field] != replayed[field]
    ]
    was = {line["line_id"]: line for line in billed["lines"]}
    now = {line["line_id"]: line for line in replayed["lines"]}
    for line_id in sorted(was.keys() | now.keys()):
        a, b = was.get(line_id), now.get(line_id)
        if a is None:
            reasons.append(f"line {b['description']!r} ({b['amount']}) was not billed")
        elif b is None:
            reasons.append(f"line {a['description']!r} ({a['amount']}) is gone in the re-rate")
        elif a["amount"] != b["amount"]:
            reasons.append(
                f"line {a['description']!r} billed {a['amount']}, re-rated {b['amount']}"
            )
    return reasons


def difference_text(difference: dict[str, Any]) -> str:
    """One line per differing invoice: month, invoice, customer and every reason."""
    invoice = difference["number"] or difference["invoice_id"] or "(not billed)"
    return (
        f"{difference['period']} {invoice} {difference['customer_id']} "
        f"{difference['subscription_id']}: {'; '.join(difference['reasons'])}"
    )
