"""Dunning in Dagster (SPEC 11): after the payment status is pulled from Stripe, decide which
reminders are due, record them in the outbox (dunning/outbox.sqlite) and send them by SMTP.

The warehouse is read, then closed, before any mail is sent: a slow mail server never holds
the warehouse's lock. The SMTP password is read from the environment by the transport and
appears in no metadata, log line or outbox row."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from integrations.mail.smtp import MailConfigError, smtp_transport
from orchestration.billing.dunning.outbox import DunningOutbox, dunning_outbox_path
from orchestration.billing.dunning.receivables import read_receivables
from orchestration.billing.dunning.run import DunningReport, run_dunning
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.workspace import now_utc


@asset(
    key="dunning_notices",
    group_name="stripe",
    deps=["accounts_receivable"],
    description=(
        "Payment reminders for overdue invoices: one on each of settings.dunning.reminder_days "
        "after the due date and a final notice after final_notice_days, each sent once by "
        "email (settings.smtp) with the amount still owed and Stripe's payment link. A paid, "
        "voided or fully credited invoice gets no more; when several reminders fell due "
        "while dunning did not run, only the latest is sent."
    ),
    kinds={"python", "sqlite", "email"},
)
def dunning_notices(
    context: AssetExecutionContext, meterbook: MeterbookWorkspace
) -> MaterializeResult:
    catalog = meterbook.catalog()
    ws = meterbook.workspace
    with meterbook.reader() as con:
        states = read_receivables(con)
    outbox = DunningOutbox(dunning_outbox_path(ws.home))
    transport, not_sent = _transport(catalog, context.log)
    report = run_dunning(
        states,
        catalog,
        outbox,
        now_utc(),
        transport,
        catalog_dir=ws.catalog_dir,
        not_sent_because=not_sent,
        log=context.log,
    )
    return MaterializeResult(metadata=dunning_metadata(report))


def _transport(catalog, log):
    """The SMTP transport, or None and why (never with the password's value)."""
    smtp = catalog.settings.smtp
    if catalog.settings.dunning is None:
        return None, "no settings.dunning: dunning is off"
    if smtp is None:
        return None, "no settings.smtp: recorded only"
    try:
        return smtp_transport(smtp), ""
    except MailConfigError as exc:
        log.warning(f"dunning reminders not sent: {exc}")
        return None, f"not sent: {exc}"


def dunning_metadata(report: DunningReport) -> dict:
    data = report.metadata()
    return {
        "due": data["due"],
        "sent": data["sent"],
        "skipped": data["skipped"],
        "cancelled": data["cancelled"],
        "failed": data["failed"],
        "pending": data["pending"],
        "held": data["held"],
        "delivery": data["delivery"],
        "previews": MetadataValue.md(_previews_markdown(data["previews"])),
        "outcomes": MetadataValue.json(data["outcomes"]),
        "cancelled_steps": MetadataValue.json(data["cancelled_steps"]),
        "held_invoices": MetadataValue.json(data["held_invoices"]),
    }


def _previews_markdown(previews: list[dict]) -> str:
    if not previews:
        return "nothing due today"
    parts = []
    for p in previews:
        to = ", ".join(p["recipients"])
        parts.append(f"**{p['subject']}** — {p['step']}, to {to}\n\n```\n{p['text'].strip()}\n```")
    return "\n\n".join(parts)
