"""The one door to Stripe: the API key, the base address, bounded retries, and errors.

`StripeGateway` wraps the official SDK's `StripeClient` (pinned to the API version our
payloads are written for) and adds what the SDK leaves to us:

- retries of 429, 409 and 5xx answers and of dropped connections/timeouts, with a bounded
  exponential backoff whose `sleep` is injectable (tests pass a recorder instead of waiting).
  The SDK's own retries are off, so one policy decides. Every POST we retry carries our
  deterministic idempotency key, so a retry can never create a second object;
- errors turned into the three kinds of `errors.py`, with the API key redacted from every
  message, and raised outside the SDK's exception context so no traceback carries it either;
- a log filter on the SDK's `stripe` logger that redacts the key, should a server ever echo
  it back in an error message the SDK logs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

import requests
import stripe

from integrations.stripe.errors import StripeApiError, StripeConfigError, StripeUnavailable

log = logging.getLogger(__name__)

DEFAULT_API_BASE = "https://api.stripe.com"
# The API version our payloads follow and the tests validate against (Stripe's OpenAPI
# description of 2024-04-10). Pinned so an SDK upgrade cannot change what our params mean.
API_VERSION = "2024-04-10"
ENV_API_KEY = "STRIPE_API_KEY"
ENV_API_BASE = "STRIPE_API_BASE"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_REDACTED = "[redacted]"


@dataclass(frozen=True)
class RetryPolicy:
    """At most `max_attempts` tries; waits grow 2x from `base_delay` up to `max_delay`.

    No jitter: one sync runs at a time per workspace, so there is no herd to spread, and a
    fixed schedule keeps the waits predictable in logs and tests.
    """

    max_attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 8.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise StripeConfigError("RetryPolicy.max_attempts must be at least 1")

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after the `failed_attempts`-th failure (1, 2, ...)."""
        return min(self.max_delay, self.base_delay * 2 ** (failed_attempts - 1))


@dataclass(frozen=True)
class StripeConfig:
    api_key: str = field(repr=False)
    api_base: str = DEFAULT_API_BASE
    timeout_seconds: float = 30.0
    retry: RetryPolicy = RetryPolicy()

    def __post_init__(self) -> None:
        if not self.api_key or not self.api_key.strip():
            raise StripeConfigError(f"the Stripe API key is empty (set {ENV_API_KEY})")
        object.__setattr__(self, "api_base", _checked_base(self.api_base))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **options: Any) -> StripeConfig:
        """`STRIPE_API_KEY` (required) and `STRIPE_API_BASE` (default api.stripe.com)."""
        env = os.environ if environ is None else environ
        key = env.get(ENV_API_KEY, "")
        if not key.strip():
            raise StripeConfigError(f"{ENV_API_KEY} is not set: Stripe needs a secret API key")
        base = env.get(ENV_API_BASE) or DEFAULT_API_BASE
        return cls(api_key=key, api_base=base, **options)


def _checked_base(base: str) -> str:
    parts = urlsplit(base.strip())
    plain_http_ok = parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
    if not parts.hostname or not (parts.scheme == "https" or plain_http_ok):
        # The secret key travels in a header: never over plain HTTP beyond this machine.
        raise StripeConfigError(
            f"{ENV_API_BASE} must be an https:// URL (http:// only for a local test server), "
            f"got {base!r}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise StripeConfigError(f"{ENV_API_BASE} must be scheme://host[:port], got {base!r}")
    return f"{parts.scheme}://{parts.netloc}"


def _http_client(config: StripeConfig) -> stripe.HTTPClient:
    """requests, talking to our one host: its proxy (HTTPS_PROXY, NO_PROXY) is resolved once
    here, instead of requests re-reading the environment on every call."""
    session = requests.Session()
    session.trust_env = False  # also: no ~/.netrc credentials slipped into our requests
    parts = urlsplit(config.api_base)
    proxy = None if proxy_bypass(parts.hostname) else getproxies().get(parts.scheme)
    if proxy:
        session.proxies = {parts.scheme: proxy}
    return stripe.RequestsClient(timeout=config.timeout_seconds, session=session)


class _RedactKey(logging.Filter):
    def __init__(self, secret: str):
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, _REDACTED), ()
        return True


def _install_log_redaction(secret: str) -> None:
    sdk_logger = logging.getLogger("stripe")
    if not any(isinstance(f, _RedactKey) and f.secret == secret for f in sdk_logger.filters):
        sdk_logger.addFilter(_RedactKey(secret))


@dataclass(frozen=True)
class _Failure:
    retryable: bool
    unreachable: bool  # no answer at all (connection, timeout)
    message: str
    status: int | None = None
    code: str | None = None
    error_type: str | None = None
    request_id: str | None = None


def _classify(exc: stripe.StripeError) -> _Failure:
    if isinstance(exc, stripe.APIConnectionError):
        return _Failure(bool(exc.should_retry), True, exc.user_message or str(exc))
    status = exc.http_status
    headers = exc.headers or {}
    should_retry = str(headers.get("stripe-should-retry", "")).lower()
    if should_retry in ("true", "false"):
        # Stripe says whether a retry can help (e.g. a 500 it would replay anyway).
        retryable = should_retry == "true"
    else:
        retryable = status is not None and (status in (409, 429) or status >= 500)
    error = exc.error
    return _Failure(
        retryable=retryable,
        unreachable=False,
        message=exc.user_message or str(exc),
        status=status,
        code=exc.code or (error.code if error else None),
        error_type=error.type if error else None,
        request_id=exc.request_id,
    )


class StripeGateway:
    """The Stripe calls meterbook makes, each retried and with redacted errors.

    Responses come back as plain dicts. `requests_sent` and `creates_sent` count attempts
    (retries included) for run metadata.
    """

    def __init__(
        self,
        config: StripeConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        http_client: stripe.HTTPClient | None = None,
    ):
        self._secret = config.api_key
        self._retry = config.retry
        self._sleep = sleep
        self.api_base = config.api_base
        self.requests_sent = 0
        self.creates_sent = 0
        _install_log_redaction(config.api_key)
        self._http = http_client or _http_client(config)
        self._sdk = stripe.StripeClient(
            config.api_key,
            base_addresses={"api": config.api_base},
            stripe_version=API_VERSION,
            max_network_retries=0,
            http_client=self._http,
        )

    def __repr__(self) -> str:
        return f"StripeGateway(api_base={self.api_base!r})"

    def close(self) -> None:
        self._http.close()

    # -- customers -----------------------------------------------------------------------

    def search_customers(self, query: str) -> list[dict]:
        found = self._call(
            "GET /v1/customers/search",
            lambda: self._sdk.v1.customers.search(params={"query": query, "limit": 10}),
        )
        return [item.to_dict() for item in found.data]

    def create_customer(self, params: dict, key: str) -> tuple[dict, bool]:
        return self._create(
            "POST /v1/customers",
            lambda: self._sdk.v1.customers.create(params=params, options={"idempotency_key": key}),
        )

    # -- invoices ------------------------------------------------------------------------

    def search_invoices(self, query: str) -> list[dict]:
        found = self._call(
            "GET /v1/invoices/search",
            lambda: self._sdk.v1.invoices.search(params={"query": query, "limit": 10}),
        )
        return [item.to_dict() for item in found.data]

    def retrieve_invoice(self, stripe_invoice_id: str) -> dict:
        return self._call(
            "GET /v1/invoices/{invoice}",
            lambda: self._sdk.v1.invoices.retrieve(stripe_invoice_id),
        ).to_dict()

    def create_invoice(self, params: dict, key: str) -> tuple[dict, bool]:
        return self._create(
            "POST /v1/invoices",
            lambda: self._sdk.v1.invoices.create(params=params, options={"idempotency_key": key}),
        )

    def finalize_invoice(self, stripe_invoice_id: str, params: dict, key: str) -> dict:
        return self._call(
            "POST /v1/invoices/{invoice}/finalize",
            lambda: self._sdk.v1.invoices.finalize_invoice(
                stripe_invoice_id, params=params, options={"idempotency_key": key}
            ),
        ).to_dict()

    def void_invoice(self, stripe_invoice_id: str, key: str) -> dict:
        return self._call(
            "POST /v1/invoices/{invoice}/void",
            lambda: self._sdk.v1.invoices.void_invoice(
                stripe_invoice_id, options={"idempotency_key": key}
            ),
        ).to_dict()

    def delete_draft_invoice(self, stripe_invoice_id: str) -> dict:
        """Stripe cannot void a draft; a draft of an invoice we voided is deleted instead."""
        return self._call(
            "DELETE /v1/invoices/{invoice}",
            lambda: self._sdk.v1.invoices.delete(stripe_invoice_id),
        ).to_dict()

    # -- invoice items -------------------------------------------------------------------

    def list_invoice_items(self, stripe_invoice_id: str) -> list[dict]:
        """Every item of one invoice (list endpoints are strongly consistent, search is not)."""
        return self._list_all(
            "GET /v1/invoiceitems",
            lambda p: self._sdk.v1.invoice_items.list(params=p),
            {"invoice": stripe_invoice_id},
        )

    def create_invoice_item(self, params: dict, key: str) -> tuple[dict, bool]:
        return self._create(
            "POST /v1/invoiceitems",
            lambda: self._sdk.v1.invoice_items.create(
                params=params, options={"idempotency_key": key}
            ),
        )

    # -- credit notes and refunds ---------------------------------------------------------

    def list_credit_notes(self, stripe_invoice_id: str) -> list[dict]:
        """Every credit note of one invoice (a list: strongly consistent, unlike search)."""
        return self._list_all(
            "GET /v1/credit_notes",
            lambda p: self._sdk.v1.credit_notes.list(params=p),
            {"invoice": stripe_invoice_id},
        )

    def create_credit_note(self, params: dict, key: str) -> tuple[dict, bool]:
        return self._create(
            "POST /v1/credit_notes",
            lambda: self._sdk.v1.credit_notes.create(
                params=params, options={"idempotency_key": key}
            ),
        )

    def list_refunds(
        self, *, payment_intent: str | None = None, charge: str | None = None
    ) -> list[dict]:
        """Every refund of one payment (by its payment intent, or its charge when it has none)."""
        if (payment_intent is None) == (charge is None):
            raise ValueError("list_refunds needs exactly one of payment_intent and charge")
        target = {"payment_intent": payment_intent} if payment_intent else {"charge": charge}
        return self._list_all(
            "GET /v1/refunds", lambda p: self._sdk.v1.refunds.list(params=p), target
        )

    def create_refund(self, params: dict, key: str) -> tuple[dict, bool]:
        return self._create(
            "POST /v1/refunds",
            lambda: self._sdk.v1.refunds.create(params=params, options={"idempotency_key": key}),
        )

    # -- the retry loop ------------------------------------------------------------------

    def _list_all(
        self, label: str, list_page: Callable[[dict], Any], params: dict[str, Any]
    ) -> list[dict]:
        """Every page of a list endpoint, each page retried on its own."""
        found: list[dict] = []
        params = {**params, "limit": 100}
        while True:
            page = self._call(label, lambda p=dict(params): list_page(p))
            found.extend(obj.to_dict() for obj in page.data)
            if not page.has_more or not page.data:
                return found
            params["starting_after"] = page.data[-1].id

    def _create(self, label: str, send: Callable[[], Any]) -> tuple[dict, bool]:
        """The created object, and whether Stripe replayed it for a key seen before.

        A replay is the response of the first request, so its state may be stale.
        """

        def counted() -> Any:
            self.creates_sent += 1
            return send()

        created = self._call(label, counted)
        headers = created.last_response.headers if created.last_response else {}
        replayed = str(headers.get("idempotent-replayed", "")).lower() == "true"
        return created.to_dict(), replayed

    def _call(self, label: str, send: Callable[[], Any]) -> Any:
        for attempt in range(1, self._retry.max_attempts + 1):
            self.requests_sent += 1
            try:
                return send()
            except stripe.StripeError as exc:
                failure = _classify(exc)
            if not failure.retryable or attempt == self._retry.max_attempts:
                break
            wait = self._retry.delay(attempt)
            log.warning(
                "Stripe %s failed (%s); retry %d of %d in %.2fs",
                label,
                self._describe(failure),
                attempt,
                self._retry.max_attempts - 1,
                wait,
            )
            self._sleep(wait)
        # Raised here, outside the `except`, so the SDK's exception is not chained to ours.
        raise self._error(label, failure, attempt)

    def _describe(self, failure: _Failure) -> str:
        parts = [f"HTTP {failure.status}" if failure.status else "no answer"]
        parts += [p for p in (failure.error_type, failure.code) if p]
        # The SDK's connection messages span lines; one line reads better in a run's log.
        text = " ".join(parts) + ": " + " ".join(failure.message.split())
        if failure.request_id:
            text += f" [request {failure.request_id}]"
        return self._redact(text)

    def _error(self, label: str, failure: _Failure, attempts: int) -> Exception:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        message = f"Stripe {label} failed{tries}: {self._describe(failure)}"
        if failure.unreachable:
            return StripeUnavailable(message)
        return StripeApiError(
            message,
            status=failure.status,
            code=failure.code,
            error_type=failure.error_type,
            request_id=failure.request_id,
        )

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, _REDACTED)
