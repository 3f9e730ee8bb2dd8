"""SMTP with STARTTLS and login (the password from the environment), and the password nowhere
else: not in logs, not on stderr, not in the outbox file, not in reports or reprs, even when a
server echoes it back; never sent in clear text."""

from __future__ import annotations

import base64
import json
import logging
import ssl

import pytest
from dunning_fixtures import ACME, PASSWORD, PASSWORD_ENV, day, make_world, smtp_settings
from smtp_server import SmtpServer

from integrations.mail.smtp import MailConfigError, SmtpTransport, smtp_password, smtp_transport

FORMS = (PASSWORD, base64.b64encode(PASSWORD.encode()).decode())


def _outbox_bytes(world) -> bytes:
    folder = world.outbox.path.parent
    return b"".join(p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file())


def _our_logs(caplog) -> str:
    """Every record but the test server's own (aiosmtpd's `mail.log`: the server side, which
    in one test quotes the password on purpose)."""
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.exc_text or ''}"
        for r in caplog.records
        if not r.name.startswith("mail.log")
    )


def _assert_nowhere(*texts: str | bytes) -> None:
    for text in texts:
        data = text if isinstance(text, bytes) else text.encode()
        for form in FORMS:
            assert form.encode() not in data


@pytest.fixture
def tls_world(tmp_path, tls_server, monkeypatch):
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    return make_world(
        tmp_path / "home", smtp_settings(tls_server.port, security="starttls", login=True)
    )


def test_starttls_and_login_send_and_the_password_stays_secret(
    tls_world, tls_server, client_tls, caplog, capfd
):
    caplog.set_level(logging.DEBUG)  # everything any library logs
    transport = smtp_transport(tls_world.catalog().settings.smtp, ssl_context=client_tls)
    report = tls_world.run(day(1), transport)
    assert report.metadata()["sent"] == 1
    # the server refuses MAIL before STARTTLS and AUTH before TLS: receiving proves both
    assert tls_server.auth_attempts == [("billing@meterbook.test", "PLAIN", True)]
    assert [r.step for r in tls_server.received] == ["reminder_1"]
    assert report.delivery == (
        f"smtp://127.0.0.1:{tls_server.port} (starttls, login billing@meterbook.test)"
    )
    out, err = capfd.readouterr()
    _assert_nowhere(
        _our_logs(caplog),
        out,
        err,
        _outbox_bytes(tls_world),
        json.dumps(report.metadata()),
        repr(transport),
        repr(transport.__dict__),
    )
    assert "sent reminder_1 of invoice MB-2026-000001" in caplog.text


def test_implicit_tls_and_login_send(tmp_path, certificate, client_tls, monkeypatch):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    server = SmtpServer(implicit_tls=context, logins={"billing@meterbook.test": PASSWORD})
    server.start()
    try:
        monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
        world = make_world(
            tmp_path / "home", smtp_settings(server.port, security="ssl", login=True)
        )
        transport = smtp_transport(world.catalog().settings.smtp, ssl_context=client_tls)
        report = world.run(day(1), transport)
    finally:
        server.stop()
    assert report.metadata()["sent"] == 1 and [r.step for r in server.received] == ["reminder_1"]
    assert [ok for _, _, ok in server.auth_attempts] == [True]
    _assert_nowhere(_outbox_bytes(world))


def test_a_refused_login_echoing_the_password_is_recorded_redacted(
    tmp_path, certificate, client_tls, monkeypatch, caplog, capfd
):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    # a server that refuses the login and quotes what it was given
    server = SmtpServer(
        tls_context=context,
        require_starttls=True,
        logins={"billing@meterbook.test": "another password"},
        refusal_text=f"535 5.7.8 {PASSWORD} is not it ({FORMS[1]})",
    ).start()
    try:
        monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
        world = make_world(
            tmp_path / "home", smtp_settings(server.port, security="starttls", login=True)
        )
        caplog.set_level(logging.DEBUG)
        transport = smtp_transport(world.catalog().settings.smtp, ssl_context=client_tls)
        report = world.run(day(1), transport)
    finally:
        server.stop()
    assert server.received == []
    row = world.outbox.get(ACME.invoice_id, "reminder_1")
    assert row.status == "pending"  # the next run tries again, once the password is fixed
    assert row.last_error.startswith(
        f"login refused by smtp://127.0.0.1:{server.port} (starttls, login "
        "billing@meterbook.test): 535 5.7.8 [redacted] is not it ([redacted])"
    )
    out, err = capfd.readouterr()
    _assert_nowhere(
        _our_logs(caplog), out, err, _outbox_bytes(world), json.dumps(report.metadata())
    )


def test_starttls_is_never_skipped_when_the_server_does_not_offer_it(
    world, smtp_server, monkeypatch
):
    # settings say starttls; the server (plain) offers no STARTTLS: nothing is sent in clear
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    settings = world.catalog().settings.smtp.model_copy(
        update={
            "security": "starttls",
            "username": "billing@meterbook.test",
            "password_env": PASSWORD_ENV,
        }
    )
    report = world.run(day(1), smtp_transport(settings))
    assert smtp_server.received == [] and report.metadata()["pending"] == 1
    error = world.outbox.get(ACME.invoice_id, "reminder_1").last_error
    assert "the server does not offer STARTTLS" in error


def test_a_certificate_not_trusted_is_refused(tls_world, tls_server):
    transport = smtp_transport(tls_world.catalog().settings.smtp)  # the system's trust store
    tls_world.run(day(1), transport)
    assert tls_server.received == [] and tls_server.auth_attempts == []
    error = tls_world.outbox.get(ACME.invoice_id, "reminder_1").last_error
    assert error.startswith(f"TLS with smtp://127.0.0.1:{tls_server.port}")
    assert "CERTIFICATE_VERIFY_FAILED" in error


def test_the_password_comes_from_the_variable_the_catalog_names(monkeypatch, world):
    smtp = world.catalog().settings.smtp.model_copy(
        update={"username": "billing@meterbook.test", "password_env": PASSWORD_ENV}
    )
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(MailConfigError, match=f"the SMTP password is not set: set {PASSWORD_ENV}"):
        smtp_transport(smtp)
    with pytest.raises(MailConfigError, match="no password"):
        SmtpTransport(smtp, None)
    assert smtp_password(PASSWORD_ENV, {PASSWORD_ENV: PASSWORD}) == PASSWORD
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    transport = smtp_transport(smtp)
    _assert_nowhere(repr(transport), repr(vars(transport)), transport.description)
