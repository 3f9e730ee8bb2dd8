"""Issue a credit note (SPEC 11): decide it, number it gaplessly and keep it in the ledger,
in one transaction. Pushing it to Stripe is a separate step (integrations/stripe/
credit_notes.py) that reads what is kept here: the ledger row is the outbox's decision.

What the credit does depends on the invoice's payment status as last pulled from Stripe
(`meterbook_stripe.accounts_receivable`; an invoice never pulled counts as unpaid):
- unpaid: it lowers what the invoice still owes (`reduce_due`), at most that;
- paid, `refund`: refunded through Stripe, at most what was paid less earlier refunds;
- paid, no refund: a paid credit grant of the total in the customer's wallet (`wallet`),
  usable from the day of issue, as a permanent wallet-ledger entry.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import duckdb

from orchestration.billing.credit_notes.document import (
    credit_note_document,
    render_credit_note_html,
)
from orchestration.billing.credit_notes.plan import (
    ZERO,
    CreditedSoFar,
    CreditNoteError,
    CreditNotePlan,
    InvoiceLine,
    plan_credit_note,
)
from orchestration.billing.finalize import format_number
from orchestration.billing.money import format_money, minor_exponent, round_money
from orchestration.billing.month import BillingMonth
from orchestration.catalog.models import Catalog
from orchestration.sql import insert_values, transaction
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.stripe import ensure_stripe_schema

PREFIX = "CN"
CREDIT_GRANT_SOURCE = "credit_note"


@dataclass(frozen=True)
class CreditNoteRequest:
    invoice: str  # the invoice's id, or its number
    reason: str
    lines: tuple[tuple[str, Decimal], ...] | None = None  # None: the whole invoice
    refund: bool = False
    credit_note_id: str | None = None  # given by the caller: issuing it again returns it


@dataclass(frozen=True)
class _Invoice:
    document: dict[str, Any]
    status: str
    lines: tuple[InvoiceLine, ...]

    @property
    def number(self) -> str:
        return self.document["number"]

    @property
    def currency(self) -> str:
        return self.document["currency"]

    def money(self, key: str) -> Decimal:
        return Decimal(self.document[key])


def credit_lines(pairs: list[tuple[str, str]]) -> tuple[tuple[str, Decimal], ...] | None:
    """(line id, amount as typed) pairs as the request's lines; None (the whole invoice) when
    there are none. Amounts are decimal text: never a float near money."""
    parsed = []
    for line_id, amount in pairs:
        try:
            parsed.append((line_id, Decimal(amount)))
        except InvalidOperation:
            raise CreditNoteError(
                f"--amount {amount!r} of line {line_id} is not a number"
            ) from None
    return tuple(parsed) or None


def issue_credit_note(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, request: CreditNoteRequest, now: datetime
) -> dict[str, Any]:
    """The credit note's document, as kept in the ledger. Raises `CreditNoteError` (one line
    naming the invoice or line) when it cannot be issued; then nothing is written."""
    ensure_ledger_schema(con)
    ensure_stripe_schema(con)
    credit_note_id = request.credit_note_id or f"cn_{uuid.uuid4().hex[:24]}"
    with transaction(con):
        kept = credit_note(con, credit_note_id)
        if kept is not None:
            return kept  # a retried run: issued once already
        document, invoice, plan = _decide(con, request, credit_note_id, now)
        customer = catalog.find_customer(invoice.document["customer_id"])
        html = render_credit_note_html(document, customer.name if customer else None)
        _insert(con, document, plan, invoice, now, html)
        if document["settlement"] == "wallet":
            _grant_to_wallet(con, document, plan, now)
    return document


def preview_credit_note(
    con: duckdb.DuckDBPyConnection, request: CreditNoteRequest, now: datetime
) -> dict[str, Any]:
    """The credit note `issue_credit_note` would issue now, written nowhere: what the CLI checks
    before it starts a run, so that a refusal is one line and no failed run."""
    ensure_ledger_schema(con)
    ensure_stripe_schema(con)
    return _decide(con, request, request.credit_note_id or "cn_preview", now)[0]


def _decide(
    con: duckdb.DuckDBPyConnection, request: CreditNoteRequest, credit_note_id: str, now: datetime
) -> tuple[dict[str, Any], _Invoice, CreditNotePlan]:
    if not request.reason or not request.reason.strip():
        raise CreditNoteError("a credit note needs a reason (--reason)")
    invoice = _load_invoice(con, request.invoice)
    plan = plan_credit_note(
        invoice.number,
        invoice.currency,
        invoice.lines,
        invoice.money("tax_total"),
        _credited_so_far(con, invoice.document["invoice_id"]),
        request.lines,
    )
    settlement = _settlement(con, invoice, plan, request.refund)
    issued_on = now.astimezone(UTC).date()
    document = credit_note_document(
        credit_note_id=credit_note_id,
        number=_next_number(con, issued_on.year),
        invoice=invoice.document,
        issued_on=issued_on,
        reason=request.reason.strip(),
        settlement=settlement,
        plan=plan,
    )
    return document, invoice, plan


def credit_note(con: duckdb.DuckDBPyConnection, credit_note_id: str) -> dict[str, Any] | None:
    """A credit note's document from the ledger, or None."""
    rows = con.execute(
        "SELECT document FROM meterbook_ledger.credit_notes WHERE credit_note_id = ?",
        [credit_note_id],
    ).fetchall()
    return json.loads(rows[0][0]) if rows else None


def credit_note_html(con: duckdb.DuckDBPyConnection, credit_note_id: str) -> str | None:
    rows = con.execute(
        "SELECT html FROM meterbook_ledger.credit_notes WHERE credit_note_id = ?",
        [credit_note_id],
    ).fetchall()
    return rows[0][0] if rows else None


def _load_invoice(con: duckdb.DuckDBPyConnection, ref: str) -> _Invoice:
    rows = con.execute(
        """
        SELECT i.document, s.status
        FROM meterbook_ledger.invoices AS i
        JOIN meterbook_ledger.current_invoice_status AS s USING (invoice_id)
        WHERE i.invoice_id = ? OR i.number = ?
        """,
        [ref, ref],
    ).fetchall()
    if not rows:
        raise CreditNoteError(
            f"invoice {ref} is not finalized: only ledger invoices are credited (a draft is "
            "corrected by the next close; ids and numbers are in `meterbook invoices --json`)"
        )
    text, status = rows[0]
    document = json.loads(text)
    if status == "void":
        raise CreditNoteError(f"invoice {document['number']} is void: there is nothing to credit")
    currency = document["currency"]
    lines = tuple(
        InvoiceLine(line_id, kind, description, round_money(amount, currency))
        for line_id, kind, description, amount in con.execute(
            "SELECT line_id, kind, description, amount FROM meterbook_ledger.invoice_lines "
            "WHERE invoice_id = ? ORDER BY position",
            [document["invoice_id"]],
        ).fetchall()
    )
    return _Invoice(document, status, lines)


def _credited_so_far(con: duckdb.DuckDBPyConnection, invoice_id: str) -> CreditedSoFar:
    by_line: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for line_id, amount in con.execute(
        """
        SELECT l.line_id, l.amount
        FROM meterbook_ledger.credit_note_lines AS l
        JOIN meterbook_ledger.credit_notes AS n USING (credit_note_id)
        WHERE n.invoice_id = ?
        """,
        [invoice_id],
    ).fetchall():
        by_line[line_id] += amount.normalize()
    tax = con.execute(
        "SELECT coalesce(sum(tax_total), 0) FROM meterbook_ledger.credit_notes "
        "WHERE invoice_id = ?",
        [invoice_id],
    ).fetchall()[0][0]
    return CreditedSoFar(dict(by_line), Decimal(tax).normalize())


def _settlement(
    con: duckdb.DuckDBPyConnection, invoice: _Invoice, plan: CreditNotePlan, refund: bool
) -> str:
    invoice_id, currency = invoice.document["invoice_id"], invoice.currency
    status, paid = _payment(con, invoice_id)
    credited = _credited_by_settlement(con, invoice_id)
    if status != "paid":
        if refund:
            raise CreditNoteError(
                f"invoice {invoice.number} is not paid (Stripe: {status or 'never pulled'}): "
                "nothing to refund; without --refund the credit lowers what it owes"
            )
        owed = invoice.money("amount_due") - paid - credited["reduce_due"]
        if plan.total > owed:
            raise CreditNoteError(
                f"invoice {invoice.number} still owes {format_money(owed, currency)} {currency}; a credit of "
                f"{plan.total} would exceed it (credit the rest once it is paid)"
            )
        return "reduce_due"
    if refund:
        refundable = paid - credited["refund"]
        if plan.total > refundable:
            raise CreditNoteError(
                f"invoice {invoice.number}: {format_money(refundable, currency)} {currency} paid through Stripe is left "
                f"to refund, not {plan.total}; credit the rest without --refund (to the wallet)"
            )
        return "refund"
    return "wallet"


def _payment(con: duckdb.DuckDBPyConnection, invoice_id: str) -> tuple[str | None, Decimal]:
    rows = con.execute(
        "SELECT status, amount_paid FROM meterbook_stripe.accounts_receivable WHERE invoice_id = ?",
        [invoice_id],
    ).fetchall()
    return (rows[0][0], Decimal(rows[0][1])) if rows else (None, ZERO)


def _credited_by_settlement(con: duckdb.DuckDBPyConnection, invoice_id: str) -> dict[str, Decimal]:
    credited = {"reduce_due": ZERO, "refund": ZERO, "wallet": ZERO}
    for settlement, total in con.execute(
        "SELECT settlement, sum(total) FROM meterbook_ledger.credit_notes "
        "WHERE invoice_id = ? GROUP BY settlement",
        [invoice_id],
    ).fetchall():
        credited[settlement] = Decimal(total)
    return credited


def _next_number(con: duckdb.DuckDBPyConnection, year: int) -> str:
    seq = con.execute(
        "SELECT coalesce(max(number_seq), 0) + 1 FROM meterbook_ledger.credit_note_numbers "
        "WHERE number_year = ?",
        [year],
    ).fetchall()[0][0]
    return format_number(PREFIX, year, int(seq))


def _insert(con, document: dict, plan: CreditNotePlan, invoice: _Invoice, now, html: str) -> None:
    doc = invoice.document
    cn_id, number = document["credit_note_id"], document["number"]
    issued_on = date.fromisoformat(document["issued_on"])
    insert_values(
        con,
        "meterbook_ledger.credit_notes",
        [[
            cn_id, number, doc["invoice_id"], doc["number"], doc["customer_id"],
            doc["subscription_id"], doc["currency"], minor_exponent(doc["currency"]),
            issued_on, now.astimezone(UTC), document["reason"], document["settlement"],
            plan.subtotal, plan.tax_total, plan.total,
            json.dumps(document, ensure_ascii=False), html,
        ]],
    )  # fmt: skip
    insert_values(
        con,
        "meterbook_ledger.credit_note_lines",
        [
            [cn_id, line.line_id, position, line.kind, line.description, line.amount,
             line.tax_amount]
            for position, line in enumerate(plan.lines, start=1)
        ],
    )  # fmt: skip
    insert_values(
        con,
        "meterbook_ledger.credit_note_numbers",
        [[issued_on.year, int(number.rsplit("-", 1)[1]), number, cn_id]],
    )


def _grant_to_wallet(con, document: dict, plan: CreditNotePlan, now: datetime) -> None:
    """A paid grant of the credit's total, usable from its day of issue. Its entry belongs to
    the close month before the issue day's month, so the next close (which reads the entries of
    earlier close months) sees it; no earlier close can use it (they end before it starts)."""
    issued_on = date.fromisoformat(document["issued_on"])
    close_month = str(BillingMonth.of(issued_on).previous())
    seq = con.execute(
        "SELECT coalesce(max(seq), 0) + 1 FROM meterbook_ledger.wallet_entries "
        "WHERE close_month = ?",
        [close_month],
    ).fetchall()[0][0]
    insert_values(
        con,
        "meterbook_ledger.wallet_entries",
        [[
            close_month, int(seq), _entry_id(document),
            "grant", document["customer_id"], document["number"], "paid", plan.total,
            issued_on, document["currency"], document["invoice_id"], None, None,
            CREDIT_GRANT_SOURCE, document["subscription_id"], issued_on, None, 10, "all",
            None, plan.total, now.astimezone(UTC),
        ]],
    )  # fmt: skip


def _entry_id(document: dict) -> str:
    digest = hashlib.sha256(f"credit_note|{document['credit_note_id']}".encode()).hexdigest()
    return "we_" + digest[:24]
