"""Late events (SPEC 2.4): usage for a finalized period becomes an `adjustment` line.

Method. A finalized month F never changes. When usage for it arrives later, the pipeline
re-rates F (the billing models rebuilt with close_month = F; their drafts stay hidden behind
the ledger) and `record_rerated_usage` keeps what F would bill now, per subscription x meter
x group: the usage lines with their true-ups and caps (`USAGE_KINDS`). Before close month M
is built, `write_adjustment_lines` compares that with what was actually billed for F:

    difference = re-rated F - F's frozen ledger lines - adjustments for F already frozen
                 (in later invoices whose current status is 'finalized')

and writes every non-zero difference as a row of `meterbook_billing.adjustment_lines` for
M; rating adds it to the subscription's invoice of M. An adjustment is never billed twice:
once the invoice carrying it is finalized, the ledger holds it and the next difference is
zero. While M is a draft, every close recomputes the same rows (idempotent). A draft built
before another invoice carrying the same usage was finalized is stale: finalization
recomputes the rows against the ledger and refuses it (freshness.py). If M's invoice
is voided, its adjustments count as unbilled again and move to the next invoice.

Fixed fees, discounts and earlier adjustments are left out of the difference: late usage
does not change what a fee charged, and adjustments are not discounted (ARCHITECTURE).

Call order in a close of month M (the lead's pipeline), under the workspace lock:
    1. ingest, catalog tables, usage models
    2. for F in months_to_rerate(con, M):
           rebuild the billing models for close_month F (segments + dbt tag:billing)
           record_rerated_usage(con, F)
    3. write_adjustment_lines(con, catalog, M)
    4. rebuild the billing models for close_month M
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb

from orchestration.billing.ledger import draft_document, group_json
from orchestration.billing.line_kinds import kinds_in_group
from orchestration.billing.money import round_money
from orchestration.billing.month import BillingMonth
from orchestration.catalog.models import Catalog
from orchestration.sql import transaction
from orchestration.warehouse.billing import ensure_billing_schema
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.raw import raw_watermark
from orchestration.warehouse.tables import table_exists

# the usage lines with their true-ups and caps: what late events re-rate
USAGE_KINDS = kinds_in_group("usage")
_ZERO = Decimal(0)

Key = tuple[str, str | None, str | None]  # subscription, meter, canonical group


@dataclass(frozen=True)
class Totals:
    quantity: Decimal = _ZERO
    amount: Decimal = _ZERO

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.quantity + other.quantity, self.amount + other.amount)

    def __sub__(self, other: Totals) -> Totals:
        return Totals(self.quantity - other.quantity, self.amount - other.amount)


@dataclass(frozen=True)
class AdjustmentResult:
    close_month: str
    written: tuple[dict[str, Any], ...]  # rows of adjustment_lines for close_month
    unbillable: tuple[dict[str, Any], ...]  # differences whose subscription has ended


def months_to_rerate(con: duckdb.DuckDBPyConnection, close_month: str) -> list[str]:
    """Finalized months before `close_month` with usable raw events newer than what was rated.

    "Newer" is by raw_events.read_seq, against the watermark taken at finalization (or at
    the last re-rate). The time test is loose (a day either side of the invoice periods,
    whatever the customer's zone): a month re-rated for nothing just yields no difference.
    """
    BillingMonth.parse(close_month)
    ensure_ledger_schema(con)
    ensure_billing_schema(con)
    if not table_exists(con, "meterbook_raw", "raw_events"):
        return []
    rows = con.execute(
        """
        WITH marks AS (
            SELECT f.close_month,
                   greatest(min(f.raw_read_seq),
                            coalesce(max(r.raw_read_seq), 0)) AS read_seq
            FROM meterbook_ledger.period_finalizations AS f
            LEFT JOIN meterbook_billing.rerate_runs AS r ON r.source_month = f.close_month
            GROUP BY f.close_month
        ),
        spans AS (
            SELECT i.close_month,
                   min(i.period_start) - INTERVAL 1 DAY AS lo,
                   max(i.period_end) + INTERVAL 1 DAY AS hi
            FROM meterbook_ledger.invoices AS i
            JOIN meterbook_ledger.current_invoice_status AS s USING (invoice_id)
            WHERE s.status = 'finalized' AND i.close_month < ?
            GROUP BY i.close_month
        )
        SELECT spans.close_month
        FROM spans JOIN marks USING (close_month)
        WHERE EXISTS (
            SELECT 1 FROM meterbook_raw.raw_events AS e
            WHERE e.parse_reason IS NULL
              AND e.read_seq > marks.read_seq
              AND e.event_ts >= spans.lo AND e.event_ts < spans.hi
        )
        ORDER BY spans.close_month
        """,
        [close_month],
    ).fetchall()
    return [r[0] for r in rows]


def record_rerated_usage(
    con: duckdb.DuckDBPyConnection,
    source_month: str,
    now: datetime,
    drafts: dict[str, Any] | None = None,
    watermark: int | None = None,
) -> int:
    """Keep what `source_month` bills now (its freshly rebuilt drafts); returns rows kept.

    `drafts` defaults to `invoices_document(con, source_month)`: call this right after the
    billing models were rebuilt for source_month. `watermark` is the last raw event those
    drafts were built from (the pipeline passes its usage models'); without it, every event
    ingested so far counts as re-rated.
    """
    BillingMonth.parse(source_month)
    ensure_billing_schema(con)
    if drafts is None:
        drafts = draft_document(con, source_month, None)
    rows = [
        [source_month, sub, meter, group, display, totals.quantity, totals.amount]
        for (sub, meter, group), (display, totals) in sorted(
            _usage_totals(drafts["invoices"]).items(), key=lambda kv: _sortable(kv[0])
        )
    ]
    if watermark is None:
        watermark = raw_watermark(con)
    with transaction(con):
        con.execute(
            "DELETE FROM meterbook_billing.rerated_usage WHERE source_month = ?", [source_month]
        )
        if rows:
            con.executemany(
                "INSERT INTO meterbook_billing.rerated_usage VALUES (?, ?, ?, ?, ?, ?, ?)", rows
            )
        con.execute(
            "INSERT OR REPLACE INTO meterbook_billing.rerate_runs VALUES (?, ?, ?)",
            [source_month, watermark, now],
        )
    return len(rows)


def _usage_totals(invoices: Iterable[dict[str, Any]]) -> dict[Key, tuple[str | None, Totals]]:
    totals: dict[Key, tuple[str | None, Totals]] = {}
    for invoice in invoices:
        for line in invoice["lines"]:
            if line["kind"] not in USAGE_KINDS:
                continue
            key = (invoice["subscription_id"], line.get("meter"), group_json(line.get("group")))
            display = _display_group(line.get("group"))
            quantity = Decimal(line["quantity"] or 0) if line["kind"] == "usage" else _ZERO
            previous = totals.get(key, (display, Totals()))
            totals[key] = (previous[0], previous[1] + Totals(quantity, Decimal(line["amount"])))
    return totals


def _display_group(group: dict[str, Any] | None) -> str | None:
    return json.dumps(group, separators=(",", ":"), ensure_ascii=False) if group else None


def _sortable(key: Key) -> tuple[str, str, str]:
    return tuple(part or "" for part in key)


def write_adjustment_lines(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, close_month: str
) -> AdjustmentResult:
    """Replace the adjustment lines of `close_month` with the unbilled late differences."""
    result = compute_adjustment_lines(con, catalog, close_month)
    _replace_rows(con, close_month, list(result.written))
    return result


def compute_adjustment_lines(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, close_month: str
) -> AdjustmentResult:
    """The unbilled late differences `close_month` would carry, against the ledger as it is."""
    BillingMonth.parse(close_month)
    ensure_ledger_schema(con)
    ensure_billing_schema(con)
    written, unbillable = [], []
    for invoice in _finalized_sources(con, close_month):
        for row in _differences(con, invoice, close_month, catalog):
            (written if _continues(catalog, invoice) else unbillable).append(row)
    return AdjustmentResult(close_month, tuple(written), tuple(unbillable))


def _finalized_sources(con, close_month: str) -> list[dict[str, Any]]:
    """Ledger invoices of re-rated months before close_month that are still 'finalized'."""
    rows = con.execute(
        """
        SELECT i.invoice_id, i.close_month, i.subscription_id, i.currency,
               i.period_start, i.period_end
        FROM meterbook_ledger.invoices AS i
        JOIN meterbook_ledger.current_invoice_status AS s USING (invoice_id)
        WHERE s.status = 'finalized' AND i.close_month < ?
          AND i.close_month IN (SELECT source_month FROM meterbook_billing.rerate_runs)
        ORDER BY i.close_month, i.subscription_id
        """,
        [close_month],
    ).fetchall()
    names = ("invoice_id", "close_month", "subscription_id", "currency", "start", "end")
    return [dict(zip(names, row, strict=True)) for row in rows]


def _differences(con, invoice, close_month: str, catalog: Catalog) -> list[dict[str, Any]]:
    truth = _rerated(con, invoice)
    if not truth:
        # the re-rated month has no invoice for this subscription (it left the catalog):
        # no evidence of late usage, and crediting everything back would be wrong
        return []
    billed = _billed(con, invoice)
    rows = []
    for key in sorted(truth.keys() | billed.keys(), key=_sortable):
        display, now_totals = truth.get(key, (None, Totals()))
        diff = now_totals - billed.get(key, Totals())
        amount = round_money(diff.amount, invoice["currency"])
        if diff.quantity == 0 and amount == 0:
            continue
        rows.append(
            _adjustment_row(close_month, invoice, key, display, diff.quantity, amount, catalog)
        )
    return rows


def _rerated(con, invoice) -> dict[Key, tuple[str | None, Totals]]:
    rows = con.execute(
        "SELECT subscription_id, meter, group_key, group_display, quantity, amount "
        "FROM meterbook_billing.rerated_usage WHERE source_month = ? AND subscription_id = ?",
        [invoice["close_month"], invoice["subscription_id"]],
    ).fetchall()
    return {(s, m, g): (d, Totals(q, a)) for s, m, g, d, q, a in rows}


def _billed(con, invoice) -> dict[Key, Totals]:
    """The ledger's lines for the source invoice plus adjustments already frozen for it."""
    rows = con.execute(
        """
        SELECT l.meter, l.group_key,
               sum(CASE WHEN l.kind IN ('usage', 'adjustment') THEN coalesce(l.quantity, 0)
                   ELSE 0 END),
               sum(l.amount)
        FROM meterbook_ledger.invoice_lines AS l
        JOIN meterbook_ledger.invoices AS i USING (invoice_id)
        JOIN meterbook_ledger.current_invoice_status AS s USING (invoice_id)
        WHERE s.status = 'finalized' AND i.subscription_id = ?
          AND (
            (l.invoice_id = ? AND list_contains(?::VARCHAR[], l.kind))
            OR (l.kind = 'adjustment' AND l.period_start = ? AND l.period_end = ?
                AND i.close_month > ?)
          )
        GROUP BY ALL
        """,
        [
            invoice["subscription_id"], invoice["invoice_id"], list(USAGE_KINDS), invoice["start"],
            invoice["end"], invoice["close_month"],
        ],
    ).fetchall()  # fmt: skip
    return {
        (invoice["subscription_id"], meter, _canonical(group)): Totals(q, a)
        for meter, group, q, a in rows
    }


def _canonical(group_text: str | None) -> str | None:
    return group_json(json.loads(group_text)) if group_text else None


def _adjustment_row(close_month, invoice, key, display, quantity, amount, catalog) -> dict:
    subscription, meter, group = key
    start, end = invoice["start"], invoice["end"]
    ident = f"{close_month}|{subscription}|{start}|{meter}|{group}"
    return {
        "close_month": close_month,
        "subscription_id": subscription,
        "line_id": "adj_" + hashlib.sha256(ident.encode()).hexdigest()[:24],
        "meter": meter,
        "group_key": display or group,
        "description": _description(catalog, meter, display or group, start, end),
        "period_start": start,
        "period_end": end,
        "quantity": quantity if meter is not None else None,
        "amount": amount,
    }


def _description(catalog: Catalog, meter: str | None, group: str | None, start, end) -> str:
    if meter is None:
        what = "minimum spend / spend cap"
    else:
        known = catalog.find_meter(meter)
        what = known.display_name if known else meter
        if group:
            values = [str(v) for v in json.loads(group).values() if v is not None]
            what += f" ({', '.join(values)})" if values else ""
    return f"Late usage for {_iso(start)} to {_iso(end)}: {what}"


def _iso(day: date | str) -> str:
    return day.isoformat() if isinstance(day, date) else str(day)


def _continues(catalog: Catalog, invoice: dict[str, Any]) -> bool:
    """Whether the subscription will have another invoice to carry the adjustment."""
    sub = next((s for s in catalog.subscriptions if s.id == invoice["subscription_id"]), None)
    return sub is not None and (sub.end_date is None or sub.end_date > invoice["end"])


def _replace_rows(con, close_month: str, rows: list[dict[str, Any]]) -> None:
    columns = (
        "close_month", "subscription_id", "line_id", "meter", "group_key", "description",
        "period_start", "period_end", "quantity", "amount",
    )  # fmt: skip
    with transaction(con):
        con.execute(
            "DELETE FROM meterbook_billing.adjustment_lines WHERE close_month = ?", [close_month]
        )
        if rows:
            con.executemany(
                "INSERT INTO meterbook_billing.adjustment_lines VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [[row[c] for c in columns] for row in rows],
            )
