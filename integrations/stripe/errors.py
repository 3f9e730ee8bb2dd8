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

    @property
    def refused(self) -> bool:
        """Stripe looked at the request and said no (a 4xx): it created nothing. A conflict
        (409), a rate limit (429) or an `idempotency_error` is not a refusal: there, something
        may exist, or the same request may go through later under the same key."""
        return (
            self.status is not None
            and 400 <= self.status < 500
            and self.status not in (409, 429)
            and self.error_type != "idempotency_error"
        )


class StripeUnavailable(StripeError):
    pass


class SyncError(StripeError):
    """Our ledger and Stripe disagree; a person has to look (the message says where)."""


def at_most_one(found: list[dict], what: str) -> None:
    """Twins in Stripe (two objects carrying one of our ids) are reported, never chosen from."""
    if len(found) > 1:
        ids = ", ".join(sorted(obj["id"] for obj in found))
        raise SyncError(f"Stripe holds {len(found)} {what} ({ids}); keep one and re-run")
