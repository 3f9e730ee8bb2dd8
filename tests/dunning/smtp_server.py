"""A real SMTP server on 127.0.0.1 for the dunning tests (aiosmtpd in a thread of the test).

It records every message it receives (envelope and bytes), can answer DATA with a chosen
reply, can hold its DATA reply until released (so a test can kill the sending process while
the server has the message but has not said so), and can offer STARTTLS and AUTH.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)

    @property
    def message_id(self) -> str:
        return self.message["Message-ID"]

    @property
    def step(self) -> str:
        return self.message["X-Meterbook-Dunning-Step"]

    @property
    def invoice_id(self) -> str:
        return self.message["X-Meterbook-Invoice"]

    def text(self) -> str:  # lines end as the template's did, not as SMTP carries them
        return self.message.get_body(("plain",)).get_content().replace("\r\n", "\n")

    def html(self) -> str:
        return self.message.get_body(("html",)).get_content().replace("\r\n", "\n")


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_DATA(self, smtp, session, envelope) -> str:
        server = self.server
        received = Received(envelope.mail_from, tuple(envelope.rcpt_tos), envelope.content)
        with server.lock:
            server.received.append(received)
            reply = server.replies.pop(0) if server.replies else "250 OK: queued"
            hold = server.hold_next
            server.hold_next = False
        if hold:
            server.holding.set()
            # until the test releases it (or gives up): the client waits for this answer
            deadline = time.monotonic() + 60
            while not server.release.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        return reply


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SmtpServer:
    """`SmtpServer().start()`; `.port`, `.received`; `.stop()` (the fixtures do both)."""

    def __init__(
        self,
        *,
        tls_context=None,
        require_starttls: bool = False,
        implicit_tls=None,
        logins: dict[str, str] | None = None,
        refusal_text: str = "535 5.7.8 Authentication credentials invalid",
    ) -> None:
        self.lock = threading.Lock()
        self.received: list[Received] = []
        self.replies: list[str] = []  # the next DATA answers, in order (then 250)
        self.hold_next = False
        self.holding = threading.Event()
        self.release = threading.Event()
        self.logins = logins
        self.auth_attempts: list[tuple[str, str, bool]] = []
        self.refusal_text = refusal_text
        self.port = free_port()
        kwargs = {}
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=require_starttls)
        if implicit_tls is not None:  # TLS from the first byte (the `ssl` security)
            kwargs.update(ssl_context=implicit_tls)
        if logins is not None:
            # aiosmtpd counts only STARTTLS as TLS for AUTH: with implicit TLS it must be told
            # not to require it (the connection is TLS from its first byte all the same)
            secured = tls_context is not None
            kwargs.update(authenticator=self._authenticate, auth_require_tls=secured)
        self._controller = Controller(
            _Handler(self), hostname="127.0.0.1", port=self.port, **kwargs
        )

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = self.logins.get(login) == password
        self.auth_attempts.append((login, mechanism, ok))
        if ok:
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False, message=self.refusal_text)

    def start(self) -> SmtpServer:
        self._controller.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._controller.stop()

    def hold_next_reply(self) -> None:
        self.holding.clear()
        self.release.clear()
        self.hold_next = True

    def wait_until_holding(self, timeout: float = 30) -> bool:
        return self.holding.wait(timeout)

    def message_ids(self) -> list[str]:
        return [r.message_id for r in self.received]

    def steps(self) -> list[tuple[str, str]]:
        return [(r.invoice_id, r.step) for r in self.received]


def self_signed_certificate(folder: Path) -> tuple[Path, Path] | None:
    """(certificate, key) for 127.0.0.1 and localhost, made with the openssl command (None
    when it is missing: the TLS tests skip)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    return cert, key
