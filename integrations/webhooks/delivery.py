"""Deliver the alert outbox to the webhook (SPEC 9): POST, sign, retry, record.

Each pending row is POSTed as its stored body bytes with `Content-Type: application/json`,
`Meterbook-Signature` and `Idempotency-Key` (the row's key: the same on every attempt, every
re-run and after a crash, so the receiver can drop a duplicate). Then:

- 2xx: delivered;
- 4xx: rejected and recorded, never retried (the same body would be refused again);
- 5xx, timeouts, refused or dropped connections: retried with exponential backoff
  (`backoff_seconds * 2**n`) up to `max_attempts` in this call, then recorded and left
  pending for the next run or `meterbook notify`. When the receiver cannot be connected to at
  all, the rows after it are left pending without trying: they would only wait out the same
  retries;
- 3xx: redirects are not followed (a signed body goes only where it was configured to), so it
  is left pending with the answer recorded until the URL is fixed.

A process killed after the receiver answered but before the row was recorded leaves it
pending, and the next delivery sends the same bytes with the same key.

The secret never leaves this module except as an HMAC: it is not logged, not stored, not in
the report, and not in any exception raised here. Error texts that come from outside (an
answer's body, an exception's message) have it replaced by `[redacted]` should a receiver
echo it. Logged and reported URLs carry no userinfo and no query string: httpx logs each
request's full URL at INFO, so while a delivery runs a filter on the `httpx` logger strips
them from its records. httpx logs connection steps at DEBUG and never request headers, so
the signature does not show either.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import httpx

from integrations.webhooks.signing import SIGNATURE_HEADER, signature
from orchestration.billing.alerts.outbox import Outbox, OutboxRow

__all__ = [
    "IDEMPOTENCY_HEADER",
    "DeliveryOutcome",
    "DeliveryReport",
    "WebhookConfigError",
    "deliver_pending",
    "webhook_secret",
]

logger = logging.getLogger(__name__)

IDEMPOTENCY_HEADER = "Idempotency-Key"
REDACTED = "[redacted]"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
_SNIPPET_CHARS = 200


class WebhookConfigError(ValueError):
    """A webhook URL, secret or setting that cannot be used. Never quotes the secret."""


def webhook_secret(secret_env: str, environ: Mapping[str, str] | None = None) -> str:
    """The secret from the variable the catalog names (`settings.webhook.secret_env`)."""
    env = os.environ if environ is None else environ
    secret = env.get(secret_env, "")
    if not secret.strip():
        raise WebhookConfigError(f"the webhook secret is not set: set {secret_env}")
    return secret


# --- what a delivery reports ------------------------------------------------------------------


@dataclass(frozen=True)
class DeliveryOutcome:
    key: str
    status: str  # delivered | rejected | pending
    attempts: int  # POSTs made in this call (0: not attempted)
    status_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class DeliveryReport:
    url: str  # scheme://host[:port]/path: no userinfo, no query string
    outcomes: tuple[DeliveryOutcome, ...] = ()

    def _count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def delivered(self) -> int:
        return self._count("delivered")

    @property
    def rejected(self) -> int:
        return self._count("rejected")

    @property
    def pending(self) -> int:
        """Still pending after this call: to be sent by the next run or `meterbook notify`."""
        return self._count("pending")

    def by_key(self) -> dict[str, DeliveryOutcome]:
        return {outcome.key: outcome for outcome in self.outcomes}

    def metadata(self) -> dict[str, object]:
        """JSON-ready, for a Dagster materialization or `meterbook notify --json`."""
        return {
            "webhook_url": self.url,
            "delivered": self.delivered,
            "rejected": self.rejected,
            "pending": self.pending,
            "outcomes": [asdict(outcome) for outcome in self.outcomes],
        }


# --- the secret and the address ---------------------------------------------------------------


class _Signer:
    """Holds the secret for one delivery. Its repr hides it, so a debugger, a crash reporter
    or pytest's --showlocals printing frames shows nothing: deliver_pending wraps the secret
    in one first thing and drops its own reference, and every check runs through this."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def __repr__(self) -> str:
        return f"_Signer({REDACTED})"

    def check(self, target: _Target) -> None:
        if not self._secret or not self._secret.strip():
            raise WebhookConfigError("the webhook secret is empty")
        if self._secret in target.url:
            # before anything parses or quotes the URL
            raise WebhookConfigError("the webhook URL contains the webhook secret; remove it")

    def sign(self, body: bytes) -> str:
        return signature(self._secret, body)

    def redact(self, text: str) -> str:
        return text.replace(self._secret, REDACTED)


class _Target:
    """The webhook URL: POSTed to as configured, shown (logs, report, repr) as `safe`, without
    userinfo (a password) or query string. Valid once `check()` has passed."""

    __slots__ = ("safe", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.safe = ""

    def __repr__(self) -> str:
        return f"_Target({self.safe or '[unchecked]'!r})"

    def check(self) -> None:
        try:
            parts = urlsplit(self.url)
            parts.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise WebhookConfigError("the webhook URL is not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise WebhookConfigError("the webhook URL must be an http(s) URL with a host")
        safe = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
        if parts.scheme == "http" and parts.hostname not in _LOOPBACK_HOSTS:
            # bodies name customers and their spend: in clear text only to this machine
            raise WebhookConfigError(f"the webhook URL {safe} must use https (http: loopback only)")
        self.safe = safe


# --- one POST -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Attempt:
    verdict: str  # delivered | rejected | retry | hold
    status_code: int | None = None
    error: str | None = None
    unreachable: bool = False  # no connection at all: the next rows would fare no better


@dataclass(frozen=True)
class _Sender:
    client: httpx.Client
    target: _Target
    signer: _Signer
    timeout_seconds: float

    def post(self, row: OutboxRow) -> _Attempt:
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: self.signer.sign(row.body),
            IDEMPOTENCY_HEADER: row.key,
        }
        try:
            response = self.client.post(
                self.target.url, content=row.body, headers=headers, timeout=self.timeout_seconds
            )
        except httpx.HTTPError as exc:
            return self._failed(exc)
        return self._answered(response)

    def clean(self, text: str) -> str:
        """External text made safe to store and log: no secret, no full URL."""
        return self.signer.redact(text.replace(self.target.url, self.target.safe))

    def _failed(self, exc: httpx.HTTPError) -> _Attempt:
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection error"
        detail = self.clean(str(exc)).strip()
        error = f"{kind}: {type(exc).__name__}" + (f": {detail}" if detail else "")
        unreachable = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        return _Attempt("retry", error=error, unreachable=unreachable)

    def _answered(self, response: httpx.Response) -> _Attempt:
        code = response.status_code
        if 200 <= code < 300:
            return _Attempt("delivered", code)
        error = self.clean(f"HTTP {code}{_snippet(response)}")
        if 400 <= code < 500:
            return _Attempt("rejected", code, error)
        if code >= 500:
            return _Attempt("retry", code, error)
        return _Attempt("hold", code, error + " (redirects are not followed: fix the webhook URL)")


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text.split())[:_SNIPPET_CHARS]
    return f": {text}" if text else ""


# --- the outbox, row by row -------------------------------------------------------------------


@dataclass(frozen=True)
class _Policy:
    max_attempts: int
    backoff_seconds: float
    sleep: Callable[[float], object]

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise WebhookConfigError("max_attempts must be at least 1")
        if self.backoff_seconds < 0:
            raise WebhookConfigError("backoff_seconds must not be negative")

    def delay(self, failed_attempts: int) -> float:
        return self.backoff_seconds * 2 ** (failed_attempts - 1)


def _record_answer(
    outbox: Outbox,
    row: OutboxRow,
    result: _Attempt,
    attempts: int,
    safe_url: str,
    log: logging.Logger,
) -> DeliveryOutcome:
    code = result.status_code
    if result.verdict == "delivered":
        outbox.mark_delivered(row.key, code, attempts)
        log.info(
            "webhook %s: delivered %s (alert %s, subscription %s): HTTP %s after %d attempt(s)",
            safe_url,
            row.key,
            row.alert,
            row.subscription_id,
            code,
            attempts,
        )
    else:
        outbox.mark_rejected(row.key, code, attempts, result.error)
        log.warning(
            "webhook %s: rejected %s (alert %s, subscription %s), not retried: %s",
            safe_url,
            row.key,
            row.alert,
            row.subscription_id,
            result.error,
        )
    return DeliveryOutcome(row.key, result.verdict, attempts, code, result.error)


def _deliver_row(
    row: OutboxRow, sender: _Sender, outbox: Outbox, policy: _Policy, log: logging.Logger
) -> tuple[DeliveryOutcome, bool]:
    """POST one row until it is answered for good or its attempts run out. Returns the outcome
    and whether the receiver could not be connected to at all."""
    safe_url = sender.target.safe
    for attempt in range(1, policy.max_attempts + 1):
        result = sender.post(row)
        if result.verdict in ("delivered", "rejected"):
            return _record_answer(outbox, row, result, attempt, safe_url, log), False
        if result.verdict == "hold" or attempt == policy.max_attempts:
            break
        delay = policy.delay(attempt)
        log.warning(
            "webhook %s: %s attempt %d/%d failed (%s); retrying in %.2fs",
            safe_url,
            row.key,
            attempt,
            policy.max_attempts,
            result.error,
            delay,
        )
        policy.sleep(delay)
    outbox.record_attempt_failure(row.key, attempt, result.error, result.status_code)
    log.warning(
        "webhook %s: %s still pending after %d attempt(s): %s",
        safe_url,
        row.key,
        attempt,
        result.error,
    )
    outcome = DeliveryOutcome(row.key, "pending", attempt, result.status_code, result.error)
    return outcome, result.unreachable


def _deliver_rows(
    rows: list[OutboxRow], sender: _Sender, outbox: Outbox, policy: _Policy, log: logging.Logger
) -> list[DeliveryOutcome]:
    outcomes: list[DeliveryOutcome] = []
    for index, row in enumerate(rows):
        outcome, unreachable = _deliver_row(row, sender, outbox, policy, log)
        outcomes.append(outcome)
        if unreachable:
            rest = rows[index + 1 :]
            if rest:
                log.warning(
                    "webhook %s unreachable: %d more notification(s) left pending",
                    sender.target.safe,
                    len(rest),
                )
            skipped = "not attempted: the webhook could not be connected to"
            outcomes.extend(DeliveryOutcome(r.key, "pending", 0, None, skipped) for r in rest)
            break
    return outcomes


class _BareUrls(logging.Filter):
    """Strips userinfo (a password) and the query string from the URLs httpx logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, httpx.URL) for a in args):
            record.args = tuple(_bare(a) if isinstance(a, httpx.URL) else a for a in args)
        return True


def _bare(url: httpx.URL) -> str:
    return str(url.copy_with(username=None, password=None, query=None, fragment=None))


@contextmanager
def _bare_urls_in_httpx_logs() -> Iterator[None]:
    # only while we deliver: other users of httpx in the process keep their logs as they are
    httpx_logger = logging.getLogger("httpx")
    scrubber = _BareUrls()
    httpx_logger.addFilter(scrubber)
    try:
        yield
    finally:
        httpx_logger.removeFilter(scrubber)


@contextmanager
def _http(client: httpx.Client | None, timeout_seconds: float) -> Iterator[httpx.Client]:
    if client is not None:
        yield client  # the caller's: the caller closes it
        return
    with httpx.Client(timeout=timeout_seconds, follow_redirects=False) as own:
        yield own


def deliver_pending(
    outbox: Outbox,
    url: str,
    secret: str,
    *,
    client: httpx.Client | None = None,
    max_attempts: int = 5,
    backoff_seconds: float = 0.2,
    timeout_seconds: float = 5.0,
    sleep: Callable[[float], object] = time.sleep,
    log: logging.Logger = logger,
) -> DeliveryReport:
    """POST every pending notification of `outbox` to `url`, signed with `secret`, oldest
    first, and record each outcome in the outbox as it happens (module docstring)."""
    # From here on only these two hold the secret and the URL, behind reprs that hide them:
    # a traceback's frames show neither, even when a check below refuses them.
    signer, target = _Signer(secret), _Target(url)
    del secret, url
    signer.check(target)
    target.check()
    policy = _Policy(max_attempts, backoff_seconds, sleep)
    rows = outbox.pending()
    if not rows:
        return DeliveryReport(target.safe)
    with _bare_urls_in_httpx_logs(), _http(client, timeout_seconds) as http:
        sender = _Sender(http, target, signer, timeout_seconds)
        outcomes = _deliver_rows(rows, sender, outbox, policy, log)
    return DeliveryReport(target.safe, tuple(outcomes))
