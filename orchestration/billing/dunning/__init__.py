"""Dunning (SPEC 11): reminders for overdue invoices, each (invoice, step) sent exactly once
through an outbox (STYLE 12).

- `due.py`: `ReceivableState`, `dunning_steps`, `closed_reason`, `steps_due`, `plan_dunning`
  (pure: which step is due for which invoice, what is cancelled, what is held);
- `render.py`: the Jinja templates (shipped in `templates/`, overridable from
  `catalog/templates/dunning/`) and the message's exact bytes, with a Message-ID fixed per
  (invoice, step);
- `outbox.py`: `DunningOutbox(dunning_outbox_path(home))`, a SQLite file: decisions, the
  sender lock and each send's outcome;
- `run.py`: `run_dunning` (decide, record, send through a `Transport`) -> `DunningReport`,
  `preview_dunning` (what is due, recording nothing), `send_open_rows`;
- `receivables.py`: `read_receivables(con)` (the warehouse's one reader of them) and
  `receivables_view` (what the `accounts_receivable` asset shows).

The SMTP transport is `integrations.mail.smtp.SmtpTransport` (a layer above this one).
"""

from orchestration.billing.dunning.due import (
    MAX_STATUS_AGE,
    DunningPlan,
    Held,
    InvoiceSteps,
    ReceivableState,
    Step,
    closed_reason,
    dunning_steps,
    plan_dunning,
    steps_due,
)
from orchestration.billing.dunning.outbox import (
    DUNNING_STATUSES,
    DunningOutbox,
    DunningRow,
    NewRow,
    dunning_outbox_path,
)
from orchestration.billing.dunning.receivables import (
    ReceivableLine,
    ReceivablesView,
    read_receivables,
    receivables_view,
)
from orchestration.billing.dunning.run import (
    DunningPreview,
    DunningReport,
    SendOutcome,
    SendResult,
    Transport,
    preview_dunning,
    recipients_by_customer,
    run_dunning,
    send_open_rows,
)

__all__ = [
    "DUNNING_STATUSES",
    "MAX_STATUS_AGE",
    "DunningOutbox",
    "DunningPlan",
    "DunningPreview",
    "DunningReport",
    "DunningRow",
    "Held",
    "InvoiceSteps",
    "NewRow",
    "ReceivableLine",
    "ReceivableState",
    "ReceivablesView",
    "SendOutcome",
    "SendResult",
    "Step",
    "Transport",
    "closed_reason",
    "dunning_outbox_path",
    "dunning_steps",
    "plan_dunning",
    "preview_dunning",
    "read_receivables",
    "receivables_view",
    "recipients_by_customer",
    "run_dunning",
    "send_open_rows",
    "steps_due",
]
