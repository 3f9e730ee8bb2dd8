"""The credit-note job finance launches from the UI (or `meterbook credit-note`): issue the
credit note in the ledger, then push it to Stripe. Run config, as in the Launchpad:

    ops:
      issue_credit_note:
        config:
          invoice_id: inv_…            # or the invoice's number, MB-2026-000012
          reason: "Outage credit, ticket 4711"
          lines: [{line_id: li_…, amount: "10.00"}]   # empty: the whole invoice
          refund: false                # true: refund a paid invoice through Stripe

Issuing and pushing are two steps on purpose (SPEC 11 and the outbox rule of STYLE 12): the
ledger row is the decision, the push reads it, and `meterbook sync-stripe` pushes any credit
note a failed push left behind, exactly once.
"""

import os

from dagster import Config, Failure, In, MetadataValue, OpExecutionContext, Out, job, op

from integrations.stripe.client import ENV_API_KEY
from integrations.stripe.credit_notes import push_credit_notes
from orchestration.billing.credit_notes.issue import (
    CreditNoteRequest,
    credit_lines,
    credit_note_html,
    issue_credit_note,
)
from orchestration.billing.credit_notes.plan import CreditNoteError
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.defs.stripe.resource import StripeResource
from orchestration.workspace import now_utc


class CreditLine(Config):
    line_id: str
    amount: str  # decimal text ("10.00"): never a float near money


class CreditNoteConfig(Config):
    invoice_id: str
    reason: str
    lines: list[CreditLine] = []
    refund: bool = False
    # Set by `meterbook credit-note`: a retried run then returns the note it already issued.
    credit_note_id: str = ""


@op(
    out=Out(str, description="the credit note's id"),
    description="Decides the credit note (amounts, tax, settlement), numbers it CN-YYYY-NNNNNN "
    "and keeps it in the append-only ledger with its HTML document.",
)
def issue_credit_note_op(
    context: OpExecutionContext, config: CreditNoteConfig, meterbook: MeterbookWorkspace
) -> str:
    try:
        request = CreditNoteRequest(
            invoice=config.invoice_id,
            reason=config.reason,
            lines=credit_lines([(line.line_id, line.amount) for line in config.lines]),
            refund=config.refund,
            credit_note_id=config.credit_note_id or None,
        )
        with meterbook.warehouse() as con:
            note = issue_credit_note(con, meterbook.catalog(), request, now_utc())
            html = credit_note_html(con, note["credit_note_id"])
    except CreditNoteError as exc:
        raise Failure(description=str(exc)) from None
    path = meterbook.workspace.documents_dir / "credit_notes" / f"{note['number']}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html, encoding="utf-8")  # the ledger keeps the same page, as issued
    context.add_output_metadata(
        {
            "number": note["number"],
            "invoice": note["invoice_number"],
            "settlement": note["settlement"],
            "total": f"{note['total']} {note['currency']}",
            "lines": MetadataValue.md(_lines_table(note)),
            "document": MetadataValue.path(str(path)),
        }
    )
    return note["credit_note_id"]


@op(
    ins={"credit_note_id": In(str)},
    description="Pushes the credit note to Stripe (and its refund), found by our id before "
    "anything is created. Without STRIPE_API_KEY a credit note that refunds nothing waits for "
    "the next `meterbook sync-stripe`; a refund cannot wait and fails the run.",
)
def push_credit_note_op(
    context: OpExecutionContext,
    credit_note_id: str,
    meterbook: MeterbookWorkspace,
    stripe: StripeResource,
) -> None:
    if not os.environ.get(ENV_API_KEY, "").strip():
        with meterbook.reader() as con:
            settlement = con.execute(
                "SELECT settlement FROM meterbook_ledger.credit_notes WHERE credit_note_id = ?",
                [credit_note_id],
            ).fetchall()[0][0]
        if settlement == "refund":
            raise Failure(
                description=f"the credit note is issued but its refund waits: {ENV_API_KEY} is "
                "not set (set it and run `meterbook sync-stripe` for the invoice's month)"
            )
        context.log.info("not pushed to Stripe: %s is not set", ENV_API_KEY)
        return
    with meterbook.warehouse() as con:
        result = push_credit_notes(
            con, stripe.gateway(), now=now_utc(), credit_note_ids=[credit_note_id]
        )
    context.log.info("Stripe: %s", result.metadata())
    result.raise_for_failures()


@job(
    description="Credits a finalized invoice, whole or line by line: issues the "
    "credit note and pushes it to Stripe. Launch it with the invoice, the reason and, for a "
    "partial credit, the lines and amounts as run config."
)
def credit_note():
    push_credit_note_op(issue_credit_note_op())


def _lines_table(note: dict) -> str:
    rows = [
        f"| {line['description']} | {line['amount']} | {line['tax_amount']} |"
        for line in note["lines"]
    ]
    return "\n".join(["| line | amount | tax |", "|---|---|---|", *rows])
