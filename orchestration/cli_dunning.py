"""`meterbook dunning [--send] [--json]` (SPEC 11): the reminders due for overdue invoices, and
with `--send` the `dunning` job (a fresh payment-status pull from Stripe, then the reminders
decided, recorded and sent by SMTP) as a Dagster run, printing what it sent.

Without `--send` nothing is recorded or sent: the list is what a run would decide now from
the payment status last pulled, plus what earlier runs decided and could not send yet.

`orchestration/cli.py` wires `cmd_dunning` in, handing it the catalog and its way of running a
job; this module never imports the CLI (the layers point down), and its refusals are
`DunningRefused`, which the CLI prints in one line like its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from orchestration.workspace import Workspace, now_utc


class DunningRefused(Exception):
    """The command cannot run as asked; the message says why in one line."""


def cmd_dunning(ws: Workspace, args, catalog, run: Callable[[Workspace, str], None]) -> int:
    """Lists what is due (`args.json`: as JSON); `args.send`: runs the dunning job with `run`
    and prints what it sent. Exit 1 when a message it tried could not be sent."""
    if catalog.settings.dunning is None:
        raise DunningRefused("settings.dunning is not set in the catalog: no reminders to send")
    if args.send:
        return _send(ws, catalog, args.json, run)
    return _list(ws, catalog, args.json)


# --- listing ------------------------------------------------------------------------------------


def _list(ws: Workspace, catalog, as_json: bool) -> int:
    from orchestration.billing.dunning.run import preview_dunning  # noqa: PLC0415

    with _receivables(ws) as states:
        preview = preview_dunning(states, catalog, _outbox(ws), now_utc())
    document = preview.document()
    if as_json:
        print(json.dumps(document, indent=2))
    else:
        print(_listing_text(document, catalog.settings.smtp is not None))
    return 0


@contextmanager
def _receivables(ws: Workspace) -> Iterator[list]:
    from orchestration.billing.dunning.receivables import read_receivables  # noqa: PLC0415
    from orchestration.defs.resources import MeterbookWorkspace  # noqa: PLC0415

    if not ws.warehouse_path.exists():
        yield []  # nothing was ever finalized or sent to Stripe: nothing can be overdue
        return
    with MeterbookWorkspace(home=str(ws.home)).reader() as con:
        states = read_receivables(con)
    yield states


def _outbox(ws: Workspace):
    from orchestration.billing.dunning.outbox import (  # noqa: PLC0415
        DunningOutbox,
        dunning_outbox_path,
    )

    return DunningOutbox(dunning_outbox_path(ws.home))


def _listing_text(document: dict, can_send: bool) -> str:
    due, waiting, held = document["due"], document["waiting"], document["held"]
    if not (due or waiting or held):
        return "nothing due: no open invoice is past a reminder day"
    lines = []
    if due:
        lines.append(f"due now ({len(due)}):")
        lines += [_due_line(item) for item in due]
    if waiting:
        lines.append(f"decided earlier, not sent yet ({len(waiting)}):")
        lines += [_waiting_line(row) for row in waiting]
    if held:
        lines.append(f"held ({len(held)}):")
        lines += [f"  {h['number']}  {h['customer_id']}: {h['reason']}" for h in held]
    if due or waiting:
        lines.append(
            "`meterbook dunning --send` sends them"
            if can_send
            else "set settings.smtp in the catalog to send them (`meterbook dunning --send`)"
        )
    return "\n".join(lines)


def _due_line(item: dict) -> str:
    skips = f" (skips {', '.join(item['skips'])})" if item["skips"] else ""
    return (
        f"  {item['number']}  {item['customer_id']}  {item['step']}{skips}  "
        f"{item['days_overdue']} days overdue  {item['currency']} {item['amount_due']}  "
        f"to {', '.join(item['recipients'])}"
    )


def _waiting_line(row: dict) -> str:
    error = f"  last error: {row['last_error']}" if row["last_error"] else ""
    return (
        f"  {row['number']}  {row['customer_id']}  {row['step']}  {row['status']} since "
        f"{row['decided_at']}  to {', '.join(row['recipients'])}{error}"
    )


# --- sending ------------------------------------------------------------------------------------


def _send(ws: Workspace, catalog, as_json: bool, run: Callable[[Workspace, str], None]) -> int:
    from integrations.mail.smtp import MailConfigError, smtp_password  # noqa: PLC0415

    smtp = catalog.settings.smtp
    if smtp is None:  # refused before a run starts: nothing would be sent
        raise DunningRefused(
            "settings.smtp is not set in the catalog: nowhere to send reminders "
            "(`meterbook dunning` lists them)"
        )
    if smtp.password_env:
        try:
            smtp_password(smtp.password_env)
        except MailConfigError as exc:
            raise DunningRefused(str(exc)) from None
    outbox = _outbox(ws)
    before = {row.key: row for row in outbox.rows()}
    run(ws, "dunning")
    changes = _changes(before, outbox.rows())
    if as_json:
        print(json.dumps(changes, indent=2))
    else:
        print(_changes_text(changes))
    return 1 if changes["failed"] or changes["not_sent"] else 0


def _changes(before: dict, after: list) -> dict[str, list[dict]]:
    """What the run did to the outbox, by comparing it before and after."""
    changes: dict[str, list[dict]] = {
        "sent": [],
        "skipped": [],
        "cancelled": [],
        "failed": [],
        "not_sent": [],
    }
    for row in after:
        old = before.get(row.key)
        if old is not None and old.status == row.status and old.attempts == row.attempts:
            continue
        entry = {
            "invoice_id": row.invoice_id,
            "number": row.number,
            "customer_id": row.customer_id,
            "step": row.step,
            "days_overdue": row.days_overdue,
            "amount_due": f"{row.currency} {row.amount_due}",
            "recipients": list(row.recipients),
            "message_id": row.message_id,
            "reason": row.close_reason,
            "error": row.last_error,
        }
        if row.status in ("sent", "skipped", "cancelled", "failed"):
            changes[row.status].append(entry)
        else:  # decided or tried by this run, and still waiting: the next run tries again
            changes["not_sent"].append(entry)
    return changes


def _changes_text(changes: dict[str, list[dict]]) -> str:
    lines = [
        f"sent {c['number']} {c['step']} to {', '.join(c['recipients'])} "
        f"({c['amount_due']}, {c['days_overdue']} days overdue)"
        for c in changes["sent"]
    ]
    lines += [f"skipped {c['number']} {c['step']}: {c['reason']}" for c in changes["skipped"]]
    lines += [f"cancelled {c['number']} {c['step']}: {c['reason']}" for c in changes["cancelled"]]
    lines += [f"FAILED {c['number']} {c['step']}: {c['error']}" for c in changes["failed"]]
    lines += [
        f"not sent {c['number']} {c['step']} (tried again next run): "
        f"{c['error'] or 'not attempted'}"
        for c in changes["not_sent"]
    ]
    counts = ", ".join(f"{len(v)} {k.replace('_', ' ')}" for k, v in changes.items())
    return "\n".join([*lines, counts]) if lines else f"nothing to send ({counts})"
