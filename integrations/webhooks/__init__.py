"""Webhooks: alert notifications POSTed from the outbox (SPEC 9).

- `signing.py`: `signature(secret, body)` (the `Meterbook-Signature` header), `verify(...)`.
- `delivery.py`: `deliver_pending(outbox, url, secret, ...) -> DeliveryReport` (sign, POST,
  retry with backoff, record each outcome in the outbox), `webhook_secret(secret_env)`.
"""

from integrations.webhooks.delivery import (
    IDEMPOTENCY_HEADER,
    DeliveryOutcome,
    DeliveryReport,
    WebhookConfigError,
    deliver_pending,
    webhook_secret,
)
from integrations.webhooks.signing import SIGNATURE_HEADER, signature, verify

__all__ = [
    "IDEMPOTENCY_HEADER",
    "SIGNATURE_HEADER",
    "DeliveryOutcome",
    "DeliveryReport",
    "WebhookConfigError",
    "deliver_pending",
    "signature",
    "verify",
    "webhook_secret",
]
