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
    2. for F, customers in late_event_customers(con, M).items():
           subs = rerate_scope(con, catalog, F, customers)
           rebuild the billing models for close_month F, those subscriptions only
           (write_billing_windows(..., subs) + dbt tag:billing)
           record_rerated_usage(con, F, subscriptions=subs)
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
from orchestration.billing.windows import billed_periods
from orchestration.catalog.models import Catalog, Subscription
from orchestration.sql import insert_values, transaction
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
    """Finalized months before `close_month` with usable raw events newer than what was rated."""
    return sorted(late_event_customers(con, close_month))


def late_event_customers(
    con: duckdb.DuckDBPyConnection, close_month: str
) -> dict[str, frozenset[str]]:
    """Per finalized month before `close_month`: the customers of its late events.

    Late means usable raw events newer (by raw_events.read_seq) than the watermark taken at
    finalization or at the last re-rate. The time test is loose (a day either side of the
    invoice periods, whatever the customer's zone): a month re-rated for nothing just
    yields no difference.
    """
    BillingMonth.parse(close_month)
    ensure_ledger_schema(con)
    ensure_billing_schema(con)
    if not table_exists(con, "meterbook_raw", "raw_events"):
        return {}
    marks = con.execute(_MARKS + " SELECT min(read_seq) FROM marks").fetchall()
    if marks[0][0] is None:
        return {}
    # the lowest mark as a literal: the scan skips every stored block read before it
    rows = con.execute(
        f"""
        {_MARKS},
        spans AS (
            SELECT i.close_month,
                   min(i.period_start) - INTERVAL 1 DAY AS lo,
                   max(i.period_end) + INTERVAL 1 DAY AS hi
            FROM meterbook_ledger.invoices AS i
            JOIN meterbook_ledger.current_invoice_status AS s USING (invoice_id)
            WHERE s.status = 'finalized' AND i.close_month < ?
            GROUP BY i.close_month
        ),
        late AS (
            SELECT read_seq, event_ts, customer_id FROM meterbook_raw.raw_events
            WHERE parse_reason IS NULL AND read_seq > {int(marks[0][0])}
        )
        SELECT DISTINCT spans.close_month, late.customer_id
        FROM spans JOIN marks USING (close_month)
        JOIN late ON late.read_seq > marks.read_seq
                 AND late.event_ts >= spans.lo AND late.event_ts < spans.hi
        """,
        [close_month],
    ).fetchall()
    customers: dict[str, set[str]] = {}
    for month, customer in rows:
        customers.setdefault(month, set()).add(customer)
    return {month: frozenset(ids) for month, ids in customers.items()}


# the watermark of each finalized month: its finalization's, or its last re-rate's
_MARKS = """
WITH marks AS (
    SELECT f.close_month,
           greatest(min(f.raw_read_seq), coalesce(max(r.raw_read_seq), 0)) AS read_seq
    FROM meterbook_ledger.period_finalizations AS f
    LEFT JOIN meterbook_billing.rerate_runs AS r ON r.source_month = f.close_month
    GROUP BY f.close_month
)"""


def rerate_scope(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    source_month: str,
    customers: Iterable[str],
) -> frozenset[str]:
    """The subscriptions of finalized `source_month` to re-rate for late events of `customers`.

    Those the customers bill to (a sub-account's parent), and every period of the month not
    in the ledger (a subscription added after finalization), whose draft the re-rate would
    otherwise drop. The month's other invoices cannot change: rating them again would cost
    as much as the close itself.
    """
    payers = {
        catalog.billing_customer(c).id for c in customers if catalog.find_customer(c) is not None
    }
    frozen = {
        row[0]
        for row in con.execute(
            "SELECT subscription_id FROM meterbook_ledger.invoices WHERE close_month = ?",
            [source_month],
        ).fetchall()
    }
    return frozenset(
        bp.subscription.id
        for bp in billed_periods(catalog, source_month)
        if bp.subscription.customer_id in payers or bp.subscription.id not in frozen
    )


def record_rerated_usage(
    con: duckdb.DuckDBPyConnection,
    source_month: str,
    now: datetime,
    drafts: dict[str, Any] | None = None,
    watermark: int | None = None,
    subscriptions: frozenset[str] | None = None,
) -> int:
    """Keep what `source_month` bills now (its freshly rebuilt drafts); returns rows kept.

    `drafts` defaults to `invoices_document(con, source_month)`: call this right after the
    billing models were rebuilt for source_month. `watermark` is the last raw event those
    drafts were built from (the pipeline passes its usage models'); without it, every event
    ingested so far counts as re-rated. With `subscriptions` (a re-rate of those only, see
    `rerate_scope`), the rows of the month's other subscriptions are kept as they were.
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
            "DELETE FROM meterbook_billing.rerated_usage WHERE source_month = ? "
            "AND (? OR list_contains(?::VARCHAR[], subscription_id))",
            [source_month, subscriptions is None, sorted(subscriptions or ())],
        )
        insert_values(con, "meterbook_billing.rerated_usage", rows)
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
    sources = _finalized_sources(con, close_month)
    truth, billed = _rerated(con, close_month), _billed(con, close_month)
    subscriptions = {s.id: s for s in catalog.subscriptions}
    written, unbillable = [], []
    for invoice in sources:
        ident = invoice["invoice_id"]
        rows = _differences(invoice, close_month, catalog, truth.get(ident), billed.get(ident, {}))
        continues = _continues(subscriptions.get(invoice["subscription_id"]), invoice)
        (written if continues else unbillable).extend(rows)
    return AdjustmentResult(close_month, tuple(written), tuple(unbillable))


# Ledger invoices of re-rated months before close_month ($1) that are still 'finalized'.
_SOURCES = """
    SELECT i.invoice_id, i.close_month, i.subscription_id, i.currency,
           i.period_start, i.period_end
    FROM meterbook_ledger.invoices AS i
    JOIN meterbook_ledger.current_invoice_status AS s USING (invoice_id)
    WHERE s.status = 'finalized' AND i.close_month < $1
      AND i.close_month IN (SELECT source_month FROM meterbook_billing.rerate_runs)
"""


def _finalized_sources(con, close_month: str) -> list[dict[str, Any]]:
    rows = con.execute(
        f"{_SOURCES} ORDER BY i.close_month, i.subscription_id", [close_month]
    ).fetchall()
    names = ("invoice_id", "close_month", "subscription_id", "currency", "start", "end")
    return [dict(zip(names, row, strict=True)) for row in rows]


def _differences(invoice, close_month, catalog, truth, billed) -> list[dict[str, Any]]:
    if not truth:
        # the re-rated month has no invoice for this subscription (it left the catalog):
        # no evidence of late usage, and crediting everything back would be wrong
        return []
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


def _rerated(con, close_month: str) -> dict[str, dict[Key, tuple[str | None, Totals]]]:
    """What each source invoice's subscription bills now, by source invoice id."""
    rows = con.execute(
        f"""
        WITH sources AS ({_SOURCES})
        SELECT sources.invoice_id, r.subscription_id, r.meter, r.group_key, r.group_display,
               r.quantity, r.amount
        FROM sources
        JOIN meterbook_billing.rerated_usage AS r
          ON r.source_month = sources.close_month
         AND r.subscription_id = sources.subscription_id
        """,
        [close_month],
    ).fetchall()
    truth: dict[str, dict[Key, tuple[str | None, Totals]]] = {}
    for ident, s, m, g, d, q, a in rows:
        truth.setdefault(ident, {})[(s, m, g)] = (d, Totals(q, a))
    return truth


def _billed(con, close_month: str) -> dict[str, dict[Key, Totals]]:
    """Per source invoice id: its ledger lines plus the adjustments already frozen for it."""
    rows = con.execute(
        f"""
        WITH sources AS ({_SOURCES}),
        frozen AS (
            SELECT l.*, i.subscription_id, i.close_month AS carried_in
            FROM meterbook_ledger.invoice_lines AS l
            JOIN meterbook_ledger.invoices AS i USING (invoice_id)
            JOIN meterbook_ledger.current_invoice_status AS s USING (invoice_id)
            WHERE s.status = 'finalized'
        )
        SELECT sources.invoice_id, sources.subscription_id, l.meter, l.group_key,
               sum(CASE WHEN l.kind IN ('usage', 'adjustment') THEN coalesce(l.quantity, 0)
                   ELSE 0 END),
               sum(l.amount)
        FROM sources
        JOIN frozen AS l
          ON l.subscription_id = sources.subscription_id
         AND (
            (l.invoice_id = sources.invoice_id AND list_contains($2::VARCHAR[], l.kind))
            OR (l.kind = 'adjustment' AND l.period_start = sources.period_start
                AND l.period_end = sources.period_end AND l.carried_in > sources.close_month)
         )
        GROUP BY ALL
        """,
        [close_month, list(USAGE_KINDS)],
    ).fetchall()
    billed: dict[str, dict[Key, Totals]] = {}
    for ident, sub, meter, group, q, a in rows:
        billed.setdefault(ident, {})[(sub, meter, _canonical(group))] = Totals(q, a)
    return billed


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


def _continues(sub: Subscription | None, invoice: dict[str, Any]) -> bool:
    """Whether the subscription will have another invoice to carry the adjustment."""
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
        insert_values(
            con,
            "meterbook_billing.adjustment_lines",
            [[row[c] for c in columns] for row in rows],
        )
