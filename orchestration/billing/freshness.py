"""Whether a month's drafts are still what finalization would freeze (SPEC 2.4, 3.4).

A close builds the drafts of month M from inputs that can move before M is finalized:
- the events: a file ingested after the close holds usage of M that the drafts lack. Had
  finalization frozen them anyway and taken the late-event watermark at finalize time, that
  usage would never be billed (the watermark says it was);
- the ledger: adjustments for late usage of a finalized month, and fees already invoiced,
  depend on what is finalized. A draft of December built while November was a draft carries
  the same adjustment as November's; once November is finalized, December's copy is stale.

So every close records what its drafts were built from (`draft_builds`: the last event
read_seq the usage models held, and a digest of the ledger-derived rows), marked complete
only once the drafts and their documents exist. `finalize_built_month` refuses, in one line,
drafts that are incomplete or stale on either count, and otherwise freezes them with the
build's watermark, so events ingested after the build stay late events. The workspace lock
is held from the check to the commit, so nothing moves in between.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import duckdb

from orchestration.billing.adjustments import compute_adjustment_lines
from orchestration.billing.finalize import (
    FinalizeError,
    FinalizeResult,
    finalize_period,
    pending_drafts,
)
from orchestration.billing.ledger import draft_document, ledger_documents
from orchestration.billing.wallets.ledger import ledger_sql
from orchestration.billing.windows import prior_fee_rows
from orchestration.catalog.models import Catalog
from orchestration.warehouse.billing import ensure_billing_schema
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.models import model_exists, relation, with_refs
from orchestration.warehouse.tables import table_exists

# time_weighted carries the value of earlier events into a period (SPEC 3.1), so for it an
# event dated before the period can still change the period's quantity
_CARRY_IN = ("time_weighted",)


@dataclass(frozen=True)
class DraftBuild:
    close_month: str
    usage_read_seq: int
    inputs_digest: str
    complete: bool


def usage_watermark(con: duckdb.DuckDBPyConnection) -> int:
    """The last raw event (read_seq) the usage models have given a fate; 0 before any."""
    if not model_exists(con, "int_events_fated"):
        return 0
    row = con.execute(
        with_refs("SELECT coalesce(max(read_seq), 0) FROM {{ ref('int_events_fated') }}")
    ).fetchone()
    return int(row[0])


def inputs_digest(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    close_month: str,
    adjustments: tuple[dict[str, Any], ...] | None = None,
) -> str:
    """A digest of what the ledger gives the month's drafts: adjustments, prior fees, and the
    wallet entries of earlier months the month's credits start from (SPEC 7: an earlier
    month closed again with other draws makes this month's draws stale).

    `adjustments` are the month's adjustment rows when the caller has just computed them."""
    if adjustments is None:
        adjustments = compute_adjustment_lines(con, catalog, close_month).written
    adjustments = sorted(_canonical_row(row) for row in adjustments)
    fees = sorted(_canonical_row(row) for row in prior_fee_rows(con, close_month))
    text = repr((adjustments, fees, _opening_wallets(con, close_month)))
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical_row(row: dict[str, Any] | tuple) -> tuple[str, ...]:
    values = row.values() if isinstance(row, dict) else row
    return tuple(_canonical(v) for v in values)


def _canonical(value: Any) -> str:
    # 1.5 and 1.500000000000 (as read back from DECIMAL(38, 12)) are the same amount
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return "" if value is None else str(value)


def record_build_inputs(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    close_month: str,
    now: datetime,
    adjustments: tuple[dict[str, Any], ...],
) -> DraftBuild:
    """Called by the close before its drafts are rebuilt: what they will be built from."""
    digest = inputs_digest(con, catalog, close_month, adjustments)
    build = DraftBuild(close_month, usage_watermark(con), digest, False)
    ensure_billing_schema(con)
    con.execute(
        "INSERT OR REPLACE INTO meterbook_billing.draft_builds VALUES (?, ?, ?, false, ?)",
        [close_month, build.usage_read_seq, build.inputs_digest, now],
    )
    return build


def mark_built(con: duckdb.DuckDBPyConnection, close_month: str) -> None:
    """The drafts of the recorded build now exist (the billing models ran after it)."""
    ensure_billing_schema(con)
    con.execute(
        "UPDATE meterbook_billing.draft_builds SET complete = true WHERE close_month = ?",
        [close_month],
    )


def load_build(con: duckdb.DuckDBPyConnection, close_month: str) -> DraftBuild | None:
    ensure_billing_schema(con)
    rows = con.execute(
        "SELECT close_month, usage_read_seq, inputs_digest, complete "
        "FROM meterbook_billing.draft_builds WHERE close_month = ?",
        [close_month],
    ).fetchall()
    return DraftBuild(*rows[0]) if rows else None


def stale_reason(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, close_month: str
) -> tuple[DraftBuild | None, str | None]:
    """The build the drafts come from, and why they may not be finalized (None: they may)."""
    again = f"run `meterbook close --period {close_month}` again, then finalize"
    build = load_build(con, close_month)
    if build is None or not build.complete:
        return build, f"the drafts of {close_month} were not completely built; {again}"
    late = events_after_build(con, catalog, close_month, build.usage_read_seq)
    if late:
        return build, (
            f"{late} event(s) for {close_month} were ingested after its drafts were built; {again}"
        )
    if inputs_digest(con, catalog, close_month) != build.inputs_digest:
        return build, (
            f"the drafts of {close_month} are stale: invoices were finalized or voided, or an "
            f"earlier month's credits drawn again, since they were built, which changes their "
            f"adjustments, fee credits or prepaid credits; {again}"
        )
    return build, None


def _opening_wallets(con: duckdb.DuckDBPyConnection, close_month: str) -> list[tuple]:
    """The wallet entries a close of `close_month` starts from, permanent or not alike."""
    if not model_exists(con, "int_wallet_draws"):
        return []
    ensure_ledger_schema(con)
    sql = ledger_sql(relation("int_wallet_draws"))
    return con.execute(
        f"SELECT * EXCLUDE (provisional) FROM ({sql}) WHERE close_month < ? ORDER BY ALL",
        [close_month],
    ).fetchall()


def events_after_build(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, close_month: str, read_seq: int
) -> int:
    """Parsed events read after `read_seq` that fall in a metering window of the month."""
    needed = [("meterbook_raw", "raw_events"), ("meterbook_catalog", "customers")]
    if not all(table_exists(con, schema, table) for schema, table in needed):
        return 0
    carry_in = any(m.aggregation in _CARRY_IN for m in catalog.meters)
    row = con.execute(
        """
        SELECT count(DISTINCT e.read_seq)
        FROM meterbook_raw.raw_events AS e
        JOIN meterbook_catalog.customers AS c ON c.customer_id = e.customer_id
        JOIN meterbook_billing.meter_windows AS w
          ON w.close_month = ? AND w.billing_customer_id = c.billing_customer_id
        WHERE e.read_seq > ? AND e.parse_reason IS NULL
          AND e.event_ts < w.window_end AND (? OR e.event_ts >= w.window_start)
        """,
        [close_month, read_seq, carry_in],
    ).fetchone()
    return int(row[0])


def finalize_built_month(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, close_month: str, now: datetime
) -> FinalizeResult:
    """Finalize the month's drafts exactly as the last complete close built them."""
    drafts = draft_document(con, close_month, None)
    if not pending_drafts(drafts, ledger_documents(con, close_month), close_month):
        # nothing left to freeze: finalizing twice is a no-op (or says to close first)
        return finalize_period(con, catalog, close_month, now, drafts=drafts)
    build, reason = stale_reason(con, catalog, close_month)
    if reason is not None:
        raise FinalizeError(reason)
    return finalize_period(
        con, catalog, close_month, now, drafts=drafts, watermark=build.usage_read_seq
    )
