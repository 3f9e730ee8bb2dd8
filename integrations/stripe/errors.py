"""What can go wrong talking to Stripe, sorted by what the caller should do about it.

- `StripeConfigError`: the environment is wrong (no key, a bad base URL); nothing was sent.
- `StripeApiError`: Stripe answered and refused (a 4xx), or kept failing (429/5xx) after every
  retry. It concerns one request, so the sync records it against one invoice and goes on.
- `StripeUnavailable`: Stripe could not be reached (connection refused or dropped, timeouts)
  after every retry. Going on with the next invoice would fail the same way, so the run stops;
  re-running it later is safe (everything is idempotent).
- `SyncError`: our records and Stripe's disagree in a way a re-run cannot fix on its own.

No message carries the API key: the client redacts it before building any of these.
"""

from __future__ import annotations


class StripeError(Exception):
    """Base class of every error this package raises."""


class StripeConfigError(StripeError):
    pass


class StripeApiError(StripeError):
    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        error_type: str | None = None,
        request_id: str | None = None,
    ):
        self.status = status
        self.code = code
        self.error_type = error_type
        self.request_id = request_id
        super().__init__(message)


class StripeUnavailable(StripeError):
    pass


class SyncError(StripeError):
    """Our ledger and Stripe disagree; a person has to look (the message says where)."""
