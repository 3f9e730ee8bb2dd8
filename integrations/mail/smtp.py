"""Send dunning messages by SMTP with the standard library's `smtplib` (SPEC 11).

`SmtpTransport` is the `Transport` of `orchestration.billing.dunning.run`: it sends a message's
exact bytes to its recipients over one connection per run, opened on the first message:

- `security: starttls` (default, port 587): a plain connection upgraded with STARTTLS before
  anything else is said; a server that does not offer STARTTLS is refused, never used in
  clear. `ssl` (port 465): TLS from the first byte. `none` (port 25): clear text, which the
  catalog allows only to this machine. Certificates are checked (the system's trust store, or
  `ssl_context`).
- `username` + `password_env`: AUTH after TLS is up.

What a server's answer means for the message (`SendResult`):

- accepted (for some recipients at least): sent; the refused ones are noted;
- 5xx for the message or every recipient: failed, not retried (it would be refused again);
- 4xx (greylisting, a full mailbox, a rate limit): pending, tried by the next run;
- cannot connect, TLS or login refused, the sender refused, the connection lost: stop, this
  message and the rest stay pending for the next run (they would fare no better now).

The password is read from the variable `settings.smtp.password_env` names when the transport
is made, and lives only in a `_Password` whose repr hides it. It is never logged (smtplib's
debug output, which prints the AUTH exchange, stays off), never stored, and never in a result
or an exception raised here: texts from outside (server answers, exception messages) have it,
and its base64 forms, replaced by `[redacted]` should a server echo it.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from types import TracebackType

from orchestration.billing.dunning.run import SendResult
from orchestration.catalog.models import Smtp

__all__ = ["MailConfigError", "SmtpTransport", "smtp_password", "smtp_transport"]

logger = logging.getLogger(__name__)

REDACTED = "[redacted]"


class MailConfigError(ValueError):
    """SMTP settings or a password that cannot be used. Never quotes the password."""


def smtp_password(password_env: str, environ: Mapping[str, str] | None = None) -> str:
    """The password from the variable the catalog names (`settings.smtp.password_env`)."""
    env = os.environ if environ is None else environ
    password = env.get(password_env, "")
    if not password:
        raise MailConfigError(f"the SMTP password is not set: set {password_env}")
    return password


class _Password:
    """Holds the password for one transport; its repr hides it, so a debugger, a crash
    reporter or pytest's --showlocals printing frames shows nothing."""

    __slots__ = ("_forms", "_value")

    def __init__(self, value: str, username: str) -> None:
        self._value = value
        # what a server could echo: the password, and the base64 of it (AUTH LOGIN) and of
        # the AUTH PLAIN blob
        plain = f"\0{username}\0{value}".encode()
        self._forms = (
            value,
            base64.b64encode(value.encode()).decode(),
            base64.b64encode(plain).decode(),
        )

    def __repr__(self) -> str:
        return f"_Password({REDACTED})"

    def login(self, client: smtplib.SMTP, username: str) -> None:
        client.login(username, self._value)

    def redact(self, text: str) -> str:
        for form in self._forms:
            if form:
                text = text.replace(form, REDACTED)
        return text


def smtp_transport(
    smtp: Smtp,
    environ: Mapping[str, str] | None = None,
    *,
    ssl_context: ssl.SSLContext | None = None,
) -> SmtpTransport:
    """The transport `settings.smtp` describes, its password read from the environment."""
    password = smtp_password(smtp.password_env, environ) if smtp.password_env else None
    return SmtpTransport(smtp, password, ssl_context=ssl_context)


class SmtpTransport:
    """One SMTP server, one connection per `with` block (module docstring)."""

    def __init__(
        self,
        smtp: Smtp,
        password: str | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        log: logging.Logger = logger,
    ) -> None:
        if smtp.username is not None and not password:
            raise MailConfigError(
                f"settings.smtp.username is set but no password: set {smtp.password_env}"
            )
        self._smtp = smtp
        # from here on only _Password holds it
        self._password = _Password(password, smtp.username or "") if password else None
        del password
        self._context = ssl_context
        self._client: smtplib.SMTP | None = None
        self._log = log
        login = f", login {smtp.username}" if smtp.username else ""
        self.description = f"smtp://{smtp.host}:{smtp.effective_port} ({smtp.security}{login})"

    def __repr__(self) -> str:
        return f"SmtpTransport({self.description!r})"

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close()

    # --- the connection ---------------------------------------------------------------------

    def _tls(self) -> ssl.SSLContext:
        return self._context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        smtp, timeout = self._smtp, float(self._smtp.timeout_seconds)
        if smtp.security == "ssl":
            client = smtplib.SMTP_SSL(
                smtp.host, smtp.effective_port, timeout=timeout, context=self._tls()
            )
        else:
            client = smtplib.SMTP(smtp.host, smtp.effective_port, timeout=timeout)
        try:
            client.ehlo()
            if smtp.security == "starttls":
                if not client.has_extn("starttls"):
                    # never fall back to clear text: the password and the mail would travel so
                    raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
                client.starttls(context=self._tls())
                client.ehlo()
            if self._password is not None:
                self._password.login(client, smtp.username)
        except BaseException:
            _quietly_close(client)
            raise
        self._log.info("dunning mail: connected to %s", self.description)
        return client

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            _quietly_close(client)

    def _clean(self, text: str) -> str:
        text = " ".join(text.split())
        return self._password.redact(text) if self._password is not None else text

    # --- one message ------------------------------------------------------------------------

    def send(self, sender: str, recipients: Sequence[str], message: bytes) -> SendResult:
        if self._client is None:
            try:
                self._client = self._connect()
            except (smtplib.SMTPException, OSError) as exc:
                return SendResult("stop", self._clean(_connect_error(exc, self.description)))
        try:
            refused = self._client.sendmail(sender, list(recipients), message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            verdict = "failed" if codes and all(code >= 500 for code in codes) else "retry"
            return SendResult(
                verdict, self._clean(f"recipients refused: {_refusals(exc.recipients)}")
            )
        except smtplib.SMTPSenderRefused as exc:
            error = f"sender {exc.sender!r} refused: {_answer(exc)}"
            return SendResult("stop", self._clean(error))
        except smtplib.SMTPResponseException as exc:
            verdict = "failed" if exc.smtp_code >= 500 else "retry"
            return SendResult(verdict, self._clean(f"refused: {_answer(exc)}"))
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            return SendResult("stop", self._clean(f"connection lost: {type(exc).__name__}: {exc}"))
        note = f"refused by the server for {_refusals(refused)}" if refused else None
        return SendResult("sent", note=self._clean(note) if note else None)

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            _quietly_close(client)


def _quietly_close(client: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):  # closing what failed: nothing more to learn from it
        client.close()


def _answer(exc: smtplib.SMTPResponseException) -> str:
    text = exc.smtp_error
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return f"{exc.smtp_code} {text}"


def _refusals(refused: Mapping[str, tuple[int, bytes | str]]) -> str:
    parts = []
    for address, (code, text) in sorted(refused.items()):
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        parts.append(f"{address} ({code} {text})")
    return "; ".join(parts)


def _connect_error(exc: BaseException, where: str) -> str:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"login refused by {where}: {_answer(exc)}"
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"{where}: {exc}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed: {exc}"
    return f"cannot use {where}: {type(exc).__name__}: {exc}"
