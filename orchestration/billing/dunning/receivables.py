"""Accounts receivable as dunning sees them: each invoice sent to Stripe with what the ledger,
the last payment-status pull and the credit notes say, and the view the `accounts_receivable`
asset shows (what is owed after credit notes, days overdue, the last reminder sent).

`read_receivables(con)` is the only place that reads them from the warehouse; everything else
here is pure.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import duckdb

from orchestration.billing.dunning.due import ReceivableState, closed_reason
from orchestration.billing.money import format_money
from orchestration.warehouse.stripe import ensure_stripe_schema
from orchestration.warehouse.tables import table_exists

__all__ = ["ReceivableLine", "ReceivablesView", "read_receivables", "receivables_view"]

# What a ledger table contributes when the warehouse does not have it (yet): nothing.
_NO_CREDITS = (
    "(SELECT NULL::VARCHAR AS invoice_id, 0::DECIMAL(38, 12) AS reduced_due,"
    " 0::DECIMAL(38, 12) AS refunded, 0::DECIMAL(38, 12) AS to_wallet,"
    " 0::DECIMAL(38, 12) AS credited_total WHERE false)"
)
_NO_STATUS = "(SELECT NULL::VARCHAR AS invoice_id, NULL::VARCHAR AS status WHERE false)"
_NO_INVOICES = (
    "(SELECT NULL::VARCHAR AS invoice_id, NULL::DECIMAL(38, 12) AS total,"
    " NULL::DECIMAL(38, 12) AS amount_due, NULL::DATE AS period_start,"
    " NULL::DATE AS period_end WHERE false)"
)

_RECEIVABLES_SQL = """
SELECT ar.invoice_id, ar.number, ar.customer_id, ar.currency, ar.status,
       coalesce(ls.status, 'finalized'), ar.collection_method,
       coalesce(li.total, ar.total), coalesce(li.amount_due, ar.amount_due), ar.amount_paid,
       coalesce(c.reduced_due, 0), coalesce(c.refunded, 0), coalesce(c.to_wallet, 0),
       coalesce(c.credited_total, 0),
       ar.due_date, ar.first_failed_at, ar.pulled_at, ar.hosted_invoice_url,
       li.period_start, li.period_end
FROM meterbook_stripe.accounts_receivable AS ar
LEFT JOIN {invoices} AS li ON li.invoice_id = ar.invoice_id
LEFT JOIN {statuses} AS ls ON ls.invoice_id = ar.invoice_id
LEFT JOIN {credits} AS c ON c.invoice_id = ar.invoice_id
ORDER BY ar.close_month, ar.number
"""


def read_receivables(con: duckdb.DuckDBPyConnection) -> list[ReceivableState]:
    """Every invoice with a pulled payment status, oldest close first."""
    ensure_stripe_schema(con)  # older warehouses get the dunning columns
    credits = (
        "(SELECT invoice_id, reduced_due, refunded, to_wallet, credited_total"
        " FROM meterbook_ledger.invoice_credits)"
        if table_exists(con, "meterbook_ledger", "invoice_credits")
        else _NO_CREDITS
    )
    statuses = (
        "meterbook_ledger.current_invoice_status"
        if table_exists(con, "meterbook_ledger", "current_invoice_status")
        else _NO_STATUS
    )
    invoices = (
        "meterbook_ledger.invoices"
        if table_exists(con, "meterbook_ledger", "invoices")
        else _NO_INVOICES
    )
    sql = _RECEIVABLES_SQL.format(invoices=invoices, statuses=statuses, credits=credits)
    return [ReceivableState(*_decimals(row)) for row in con.execute(sql).fetchall()]


def _decimals(row: tuple) -> tuple:
    # sums of DECIMAL(38, 12) come back as DECIMAL too; a NULL sum (no credit note of that
    # settlement) is coalesced in SQL. Decimal() only makes the type certain for the dataclass.
    values = list(row)
    for i in range(7, 14):
        values[i] = Decimal(values[i])
    return tuple(values)


@dataclass(frozen=True)
class ReceivableLine:
    """One row of the receivables view."""

    number: str
    customer_id: str
    currency: str
    status: str  # open | overdue | paid | void | credited | ... (closed_reason when closed)
    amount_due: str  # after credit notes, the currency's minor digits
    credited: str  # credit notes that lowered what it owes
    refunded: str  # credit notes refunded through Stripe
    days_overdue: int
    last_reminder: str | None  # step
    last_reminder_at: str | None


@dataclass(frozen=True)
class ReceivablesView:
    lines: tuple[ReceivableLine, ...]  # every invoice, still owed first, most overdue first
    owed: dict[str, Decimal]  # currency -> total still owed
    overdue: dict[str, Decimal]  # currency -> total of it overdue
    counts: dict[str, int]  # by view status

    def markdown(self, limit: int = 50) -> str:
        """The invoices still owed, most overdue first, as a markdown table."""
        owed = [line for line in self.lines if line.status in ("open", "overdue")]
        if not owed:
            return "nothing owed"
        header = (
            "| invoice | customer | status | amount due | credited | refunded | days overdue "
            "| last reminder |\n|---|---|---|---:|---:|---:|---:|---|"
        )
        rows = [_markdown_row(line) for line in owed[:limit]]
        more = [f"\n({len(owed) - limit} more)"] if len(owed) > limit else []
        return "\n".join([header, *rows, *more])

    def metadata(self) -> dict[str, object]:
        """JSON-ready: counts, totals per currency (decimal strings) and the table."""
        return {
            **{f"invoices_{status}": n for status, n in sorted(self.counts.items())},
            "owed": {c: format_money(a, c) for c, a in sorted(self.owed.items())},
            "overdue_amount": {c: format_money(a, c) for c, a in sorted(self.overdue.items())},
            "receivables": self.markdown(),
        }


def _markdown_row(line: ReceivableLine) -> str:
    reminder = f"{line.last_reminder} ({line.last_reminder_at})" if line.last_reminder else "—"
    return (
        f"| {line.number} | {line.customer_id} | {line.status} | {line.currency} "
        f"{line.amount_due} | {line.credited} | {line.refunded} | {line.days_overdue} "
        f"| {reminder} |"
    )


def receivables_view(
    states: Sequence[ReceivableState],
    last_sent: Mapping[str, tuple[str, str]],
    now: datetime,
) -> ReceivablesView:
    """The view of `states` at `now`; `last_sent` is the dunning outbox's latest reminder sent
    per invoice (step, time)."""
    today = now.astimezone(UTC).date()
    lines, owed, overdue = [], Counter(), Counter()
    for state in states:
        days = state.days_overdue(today)
        status = _view_status(state, days)
        if status in ("open", "overdue"):
            owed[state.currency] += state.amount_due
            if status == "overdue":
                overdue[state.currency] += state.amount_due
        step, at = last_sent.get(state.invoice_id, (None, None))
        lines.append(_line(state, status, days, step, at))
    lines.sort(key=lambda line: (line.status not in ("open", "overdue"), -line.days_overdue))
    counts = Counter(line.status for line in lines)
    return ReceivablesView(tuple(lines), dict(owed), dict(overdue), dict(counts))


def _view_status(state: ReceivableState, days: int) -> str:
    reason = closed_reason(state, min_amount=Decimal(0))  # owed is owed, reminded or not
    if reason is None:
        return "overdue" if days > 0 else "open"
    return {"credited in full": "credited"}.get(reason, reason.removesuffix(" in Stripe"))


def _line(
    state: ReceivableState, status: str, days: int, step: str | None, at: str | None
) -> ReceivableLine:
    def money(amount: Decimal) -> str:
        return format_money(amount, state.currency)

    return ReceivableLine(
        number=state.number,
        customer_id=state.customer_id,
        currency=state.currency,
        status=status,
        amount_due=money(state.amount_due),
        credited=money(state.reduced_due),
        refunded=money(state.refunded),
        days_overdue=days if status in ("open", "overdue") else 0,
        last_reminder=step,
        last_reminder_at=at,
    )
