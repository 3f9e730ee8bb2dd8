"""Finalization: number a month's drafts gaplessly and freeze them in the ledger, in one go.

Lifecycle of an invoice (the decisions SPEC 3 leaves to us):
- `meterbook close` rebuilds every draft of the month that is not finalized, on every run.
  Within `grace_days` after the month ends that is the normal way late usage reaches a draft.
  After grace, close still rebuilds the unfinalized drafts (nothing is lost by waiting), and
  `close_warning` gives a one-line warning that the month should be finalized.
- `finalize_period` numbers the month's drafts `PREFIX-YYYY-NNNNNN` and copies them to the
  ledger in ONE transaction. YYYY is the year of the close month; there is one gapless
  sequence per (prefix, year). Order: customer, subscription, period start, invoice id.
  It refuses a month whose periods have not ended yet, and an invoice that does not add up.
  Drafts already in the ledger are skipped, so finalizing twice is a no-op; a draft that
  appears later for the same month (a subscription added afterwards) is numbered then.
- The pipeline finalizes through `freshness.finalize_built_month`, which first refuses drafts
  that are incomplete or stale against the events or the ledger, and passes the watermark of
  the events the drafts were built from.
- `void_invoice` adds a 'void' status change; the invoice row and its number stay. Void is
  terminal: the subscription's period is not re-invoiced automatically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import duckdb

from orchestration.billing.invoice_checks import invoice_problems
from orchestration.billing.ledger import (
    draft_document,
    group_json,
    invoice_sort_key,
    ledger_documents,
)
from orchestration.billing.money import minor_exponent
from orchestration.billing.month import BillingMonth
from orchestration.billing.wallets.ledger import freeze_entries
from orchestration.catalog.models import Catalog
from orchestration.sql import insert_values
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.raw import raw_watermark

_LINE_NUMBERS = ("quantity", "billable_quantity", "unit_price")


class FinalizeError(RuntimeError):
    """The month cannot be finalized; the message says why and names the invoice."""


@dataclass(frozen=True)
class FinalizeResult:
    period: str
    numbered: tuple[tuple[str, str], ...]  # (invoice_id, number), in numbering order
    already_finalized: int  # invoices of the month that were in the ledger before this call

    @property
    def noop(self) -> bool:
        return not self.numbered


@dataclass(frozen=True)
class PeriodWindow:
    period: str
    ends_at: datetime  # the month's last period end, over the customers' time zones (UTC)
    grace_ends_at: datetime  # ends_at + grace_days: drafts are expected final by then
    past_grace: bool


def format_number(prefix: str, year: int, seq: int) -> str:
    return f"{prefix}-{year:04d}-{seq:06d}"


def period_window(catalog: Catalog, close_month: str, now: datetime) -> PeriodWindow:
    """When the close month ends, and when its grace ends, in the latest customer zone."""
    first_after = BillingMonth.parse(close_month).end
    grace_day = first_after + timedelta(days=catalog.settings.grace_days)
    zones = {c.timezone for c in catalog.customers if c.parent_id is None} or {"UTC"}
    ends_at = max(local_midnight(first_after, zone) for zone in zones)
    grace_ends_at = max(local_midnight(grace_day, zone) for zone in zones)
    return PeriodWindow(close_month, ends_at, grace_ends_at, _aware(now) >= grace_ends_at)


def close_warning(
    catalog: Catalog, close_month: str, now: datetime, open_drafts: int
) -> str | None:
    """The one-line warning for a close run after grace with drafts still unfinalized."""
    window = period_window(catalog, close_month, now)
    if not window.past_grace or open_drafts == 0:
        return None
    return (
        f"{close_month} is past its grace period (ended {window.grace_ends_at:%Y-%m-%dT%H:%MZ}); "
        f"{open_drafts} draft invoice(s) were rebuilt and are still not finalized: "
        f"run `meterbook finalize --period {close_month}`"
    )


def local_midnight(day: date, zone: str) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def finalize_period(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    close_month: str,
    now: datetime,
    drafts: dict[str, Any] | None = None,
    watermark: int | None = None,
) -> FinalizeResult:
    """Number and freeze the drafts of `close_month` (see the module doc for the rules).

    `drafts` defaults to the rating stage's `invoices_document(con, close_month)` (SPEC 5 dict).
    `watermark` is the last raw event the drafts were built from: later events are late
    usage of the month. The pipeline passes its build's (`freshness.finalize_built_month`);
    without it, every event ingested so far counts as billed.
    """
    year = BillingMonth.parse(close_month).year
    now = _aware(now)
    ensure_ledger_schema(con)
    if drafts is None:
        drafts = draft_document(con, close_month, None)
    frozen = ledger_documents(con, close_month)
    pending = pending_drafts(drafts, frozen, close_month)
    if not pending:
        if frozen:
            return FinalizeResult(close_month, (), len(frozen))
        raise FinalizeError(
            f"no draft invoices for {close_month}: run `meterbook close --period {close_month}` first"
        )
    for invoice in pending:
        _check_ready(invoice, catalog, now, close_month)
    if watermark is None:
        watermark = raw_watermark(con)
    numbered = _freeze(
        con, catalog.settings.invoice_prefix, year, close_month, pending, now, watermark
    )
    return FinalizeResult(close_month, numbered, len(frozen))


def pending_drafts(
    drafts: dict[str, Any], frozen: list[dict[str, Any]], close_month: str
) -> list[dict[str, Any]]:
    if drafts.get("period") != close_month:
        raise FinalizeError(
            f"the draft document is for {drafts.get('period')!r}, not {close_month}"
        )
    done_ids = {inv["invoice_id"] for inv in frozen}
    done_subs = {inv["subscription_id"] for inv in frozen}
    seen: set[str] = set()
    pending = []
    for invoice in drafts.get("invoices", []):
        if invoice["invoice_id"] in done_ids or invoice["subscription_id"] in done_subs:
            continue
        if invoice["subscription_id"] in seen:
            raise FinalizeError(
                f"{close_month}: subscription {invoice['subscription_id']} has two draft invoices"
            )
        seen.add(invoice["subscription_id"])
        pending.append(invoice)
    return sorted(pending, key=invoice_sort_key)


def _check_ready(
    invoice: dict[str, Any], catalog: Catalog, now: datetime, close_month: str
) -> None:
    name = f"invoice {invoice['invoice_id']} ({invoice['customer_id']})"
    if invoice.get("status") != "draft":
        raise FinalizeError(f"{name} has status {invoice.get('status')!r}, not 'draft'")
    customer = catalog.find_customer(invoice["customer_id"])
    zone = customer.timezone if customer else "UTC"
    ends = local_midnight(date.fromisoformat(invoice["period_end"]), zone)
    if now < ends:
        raise FinalizeError(
            f"{name}: its period ends {ends:%Y-%m-%dT%H:%MZ}, after now ({now:%Y-%m-%dT%H:%MZ}); "
            "a period is finalized only once it is over"
        )
    problems = invoice_problems(invoice, customer.tax_rate if customer else None)
    if problems:
        raise FinalizeError(
            f"{name} does not add up ({'; '.join(problems)}); if the catalog changed since the "
            f"last close, run `meterbook close --period {close_month}` again"
        )


def _freeze(con, prefix, year, close_month, pending, now, watermark) -> tuple[tuple[str, str], ...]:
    con.execute("BEGIN TRANSACTION")
    try:
        seq = _last_seq(con, prefix, year)
        numbered = [
            (invoice["invoice_id"], format_number(prefix, year, seq + i))
            for i, invoice in enumerate(pending, start=1)
        ]
        _insert_invoices(con, close_month, pending, [number for _, number in numbered], now)
        insert_values(
            con,
            "meterbook_ledger.invoice_numbers",
            [
                [prefix, year, seq + i, number, ident]
                for i, (ident, number) in enumerate(numbered, 1)
            ],
        )
        freeze_entries(con, close_month, now)  # the wallet draws of these invoices, SPEC 7
        _record_finalization(con, close_month, now, len(numbered), watermark)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return tuple(numbered)


def _last_seq(con: duckdb.DuckDBPyConnection, prefix: str, year: int) -> int:
    row = con.execute(
        "SELECT coalesce(max(number_seq), 0) FROM meterbook_ledger.invoice_numbers "
        "WHERE number_prefix = ? AND number_year = ?",
        [prefix, year],
    ).fetchone()
    return int(row[0])


def _insert_invoices(con, close_month: str, invoices: list, numbers: list[str], now) -> None:
    """The invoices, their lines and their 'finalized' status, each table in one INSERT."""
    insert_values(
        con,
        "meterbook_ledger.invoices",
        [
            _invoice_row(close_month, invoice, number, now)
            for invoice, number in zip(invoices, numbers, strict=True)
        ],
    )
    insert_values(
        con,
        "meterbook_ledger.invoice_lines",
        [
            _line_row(invoice, position, line)
            for invoice in invoices
            for position, line in enumerate(invoice["lines"])
        ],
    )
    insert_values(
        con,
        "meterbook_ledger.invoice_status_changes",
        [[invoice["invoice_id"], "finalized", now, None] for invoice in invoices],
    )


def _invoice_row(close_month: str, invoice: dict[str, Any], number: str, now) -> list[Any]:
    frozen = dict(invoice)  # key order kept: the frozen JSON reads like the draft did
    frozen["number"] = number
    frozen["status"] = "finalized"
    document = json.dumps(frozen, ensure_ascii=False, separators=(",", ":"))
    currency = invoice["currency"]
    return [
        invoice["invoice_id"], number, close_month, invoice["customer_id"],
        invoice["subscription_id"], currency, minor_exponent(currency),
        invoice["period_start"], invoice["period_end"],
        *(Decimal(invoice[f]) for f in ("subtotal", "discount_total", "tax_total", "total")),
        Decimal(invoice.get("credits_applied") or "0"), Decimal(invoice["amount_due"]),
        now, document,
    ]  # fmt: skip


def _line_row(invoice: dict[str, Any], position: int, line: dict[str, Any]) -> list[Any]:
    numbers = [_decimal_or_none(line.get(name)) for name in _LINE_NUMBERS]
    return [
        invoice["invoice_id"], line["line_id"], position, line["kind"], line.get("meter"),
        line.get("fee_code"), group_json(line.get("group")), line.get("description") or "",
        line.get("period_start") or invoice["period_start"],
        line.get("period_end") or invoice["period_end"],
        *numbers, Decimal(line["amount"]),
    ]  # fmt: skip


def _decimal_or_none(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _record_finalization(con, close_month: str, now, invoice_count: int, watermark: int) -> None:
    """The transaction's last insert: tests/fault_injection stops a finalize right after it."""
    con.execute(
        "INSERT INTO meterbook_ledger.period_finalizations VALUES (?, ?, ?, ?)",
        [close_month, now, invoice_count, watermark],
    )


class InvoiceNotFound(FinalizeError, LookupError):
    """No finalized invoice has that id; the message says what the text is instead."""


def void_invoice(
    con: duckdb.DuckDBPyConnection, invoice_id: str, reason: str, now: datetime
) -> None:
    """Mark a finalized invoice void. The invoice, its lines and its number stay as they are."""
    if not reason or not reason.strip():
        raise FinalizeError(f"voiding {invoice_id} needs a reason")
    ensure_ledger_schema(con)
    row = con.execute(
        "SELECT status FROM meterbook_ledger.current_invoice_status WHERE invoice_id = ?",
        [invoice_id],
    ).fetchone()
    if row is None:
        raise InvoiceNotFound(_not_in_ledger(con, invoice_id))
    if row[0] == "void":
        raise FinalizeError(f"invoice {invoice_id} is already void")
    con.execute(
        "INSERT INTO meterbook_ledger.invoice_status_changes VALUES (?, 'void', ?, ?)",
        [invoice_id, _aware(now), reason.strip()],
    )  # one row, so atomic by itself; the workspace lock keeps a second voider out


def _not_in_ledger(con: duckdb.DuckDBPyConnection, invoice_id: str) -> str:
    # people copy the number they see on the document; void needs the id, so give it
    rows = con.execute(
        "SELECT invoice_id FROM meterbook_ledger.invoices WHERE number = ?", [invoice_id]
    ).fetchall()
    if rows:
        return f"{invoice_id} is an invoice number; its id is {rows[0][0]}"
    return (
        f"invoice {invoice_id} is not finalized: no ledger invoice has that id (drafts are "
        "rebuilt by close, not voided; ids are in `meterbook invoices --json`)"
    )


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)
