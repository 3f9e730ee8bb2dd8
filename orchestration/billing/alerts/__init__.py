"""Usage and spend alerts (SPEC 9): which thresholds fire, and the outbox that holds the
notifications until a webhook delivery (integrations/webhooks) has sent them.

- `firing.py`: `AlertReading`, `notifications_due(readings, fired) -> list[Notification]`
  (pure), `Notification.body()` (the exact bytes POSTed) and `.key` (the Idempotency-Key).
- `outbox.py`: `Outbox(outbox_path(home))`, a SQLite file: `fired()`, `enqueue()`,
  `enqueue_due()`, `pending()`, `rows()`, the outcomes of deliveries and
  `requeue_rejected()`.
"""

from orchestration.billing.alerts.firing import (
    METRICS,
    AlertReading,
    FiredThreshold,
    Notification,
    notification_key,
    notifications_due,
)
from orchestration.billing.alerts.outbox import STATUSES, Outbox, OutboxRow, outbox_path

__all__ = [
    "METRICS",
    "STATUSES",
    "AlertReading",
    "FiredThreshold",
    "Notification",
    "Outbox",
    "OutboxRow",
    "notification_key",
    "notifications_due",
    "outbox_path",
]
