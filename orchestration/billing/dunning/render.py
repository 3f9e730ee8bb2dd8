"""A dunning message: its subject, text and HTML from Jinja templates, and its exact bytes.

The templates ship in `templates/` beside this module; a file of the same name in the
workspace's `catalog/templates/dunning/` replaces it (one file at a time: a catalog may
override only the HTML of reminders). Names: `subject.txt`, `reminder.txt`, `reminder.html`,
`final_notice.txt`, `final_notice.html` (`orchestration.catalog.models.DUNNING_TEMPLATES`; the
catalog loader refuses other names and reports syntax errors before anything runs).

HTML is autoescaped (customer names and numbers come from the catalog and Stripe); text and
subject are not, and the subject is folded to one line, so a template cannot add a header.
Every template sees the context of `reminder_context` and fails on a name it does not have
(StrictUndefined), rather than sending a message with a blank where the amount should be.

The message is rendered once, when its step is decided, and its bytes are what every attempt
sends: the MIME boundary, the Date and the Message-ID never change between attempts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader

from orchestration.billing.documents.lines import span
from orchestration.billing.dunning.due import ReceivableState, Step
from orchestration.billing.money import format_money
from orchestration.billing.templating import template_environment as jinja_environment
from orchestration.catalog.models import DUNNING_TEMPLATES_DIR, Catalog, Dunning

__all__ = [
    "TEMPLATES",
    "Rendered",
    "build_message",
    "message_id_for",
    "reminder_context",
    "render_reminder",
    "template_environment",
]

TEMPLATES = Path(__file__).parent / "templates"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,120}$")


def template_environment(catalog_dir: Path | None) -> Environment:
    """The catalog's templates first (when it has the folder), then the shipped ones."""
    loaders = []
    if catalog_dir is not None:
        overrides = Path(catalog_dir).joinpath(*DUNNING_TEMPLATES_DIR)
        if overrides.is_dir():
            loaders.append(FileSystemLoader(overrides))
    loaders.append(FileSystemLoader(TEMPLATES))
    # by file name: HTML escaped, text as written (an "&" in a name stays an "&")
    return jinja_environment(
        ChoiceLoader(loaders), autoescape=lambda name: bool(name) and name.endswith(".html")
    )


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def reminder_context(
    state: ReceivableState, step: Step, days_overdue: int, catalog: Catalog
) -> dict[str, Any]:
    """What the templates may use. Amounts are strings with the currency's minor digits."""
    customer = catalog.find_customer(state.customer_id)
    currency = state.currency

    def money(amount) -> str:
        return format_money(amount, currency)

    return {
        "customer": {
            "id": state.customer_id,
            "name": (customer.name if customer and customer.name else state.customer_id),
        },
        "invoice": {
            "id": state.invoice_id,
            "number": state.number,
            "currency": currency,
            "total": money(state.total),
            "amount_paid": money(state.amount_paid),
            "credited": money(state.reduced_due),
            "credited_any": state.reduced_due > 0,
            "amount_due": money(state.amount_due),
            "period_start": state.period_start,
            "period_end": state.period_end,  # exclusive, as everywhere in the ledger
            # for readers: "2026-10-01 to 2026-10-31", the last day included
            "period": _period_text(state),
            "overdue_from": state.overdue_from,
        },
        "amount_due": f"{currency} {money(state.amount_due)}",
        "days_overdue": days_overdue,
        "step": {"name": step.name, "day": step.day, "final": step.final},
        "final_notice": step.final,
        "payment_url": state.hosted_invoice_url,
        "seller": catalog.settings.seller,
    }


def _period_text(state: ReceivableState) -> str | None:
    if state.period_start is None or state.period_end is None:
        return None
    return span(state.period_start.isoformat(), state.period_end.isoformat())


def render_reminder(env: Environment, context: dict[str, Any]) -> Rendered:
    kind = "final_notice" if context["final_notice"] else "reminder"
    subject = " ".join(env.get_template("subject.txt").render(**context).split())
    return Rendered(
        subject=subject,
        text=env.get_template(f"{kind}.txt").render(**context),
        html=env.get_template(f"{kind}.html").render(**context),
    )


def message_id_for(invoice_id: str, step: str, sender: str) -> str:
    """`<dunning.STEP.INVOICE@DOMAIN>`: the same for an (invoice, step) on every attempt, so a
    message sent twice after a crash is one message to mail clients that de-duplicate."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "meterbook.invalid"
    if _SAFE_ID.match(invoice_id):
        ours = invoice_id
    else:  # an id with characters a Message-ID cannot hold: its digest, as stable
        ours = hashlib.sha256(invoice_id.encode()).hexdigest()[:32]
    return f"<dunning.{step}.{ours}@{domain}>"


def build_message(
    rendered: Rendered,
    *,
    settings: Dunning,
    recipients: Sequence[str],
    message_id: str,
    invoice_id: str,
    step: str,
    date: datetime,
) -> bytes:
    """The message as sent: text with an HTML alternative, CRLF line ends (SMTP policy)."""
    message = EmailMessage(policy=SMTP)
    message["From"] = settings.from_address
    message["To"] = ", ".join(recipients)
    if settings.reply_to:
        message["Reply-To"] = settings.reply_to
    message["Subject"] = rendered.subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id
    # for a mailbox rule or a bounce handler: which invoice and step, without parsing the text
    message["X-Meterbook-Invoice"] = invoice_id
    message["X-Meterbook-Dunning-Step"] = step
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message.as_bytes()
