"""Fixtures of the dunning tests: a workspace with invoices overdue, and a live SMTP server."""

from __future__ import annotations

import ssl

import pytest
from dunning_fixtures import PASSWORD, make_world, smtp_settings
from smtp_server import SmtpServer, self_signed_certificate

from integrations.mail.smtp import SmtpTransport


@pytest.fixture
def smtp_server():
    server = SmtpServer().start()
    yield server
    server.stop()


@pytest.fixture
def world(tmp_path, smtp_server):
    """acme (send_invoice, USD 162.72), tokyo (automatic charge, JPY 7263), nomail (no
    address): finalized, in Stripe, open; the catalog sends by plain SMTP to the server."""
    return make_world(tmp_path / "home", smtp_settings(smtp_server.port))


@pytest.fixture
def transport(world):
    return SmtpTransport(world.catalog().settings.smtp)


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    made = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    return made


@pytest.fixture
def tls_server(certificate):
    """STARTTLS required before anything, AUTH required after it (aiosmtpd's default)."""
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpServer(
        tls_context=context, require_starttls=True, logins={"billing@meterbook.test": PASSWORD}
    ).start()
    yield server
    server.stop()


@pytest.fixture
def client_tls(certificate) -> ssl.SSLContext:
    """What a client trusts: the test certificate only."""
    return ssl.create_default_context(cafile=str(certificate[0]))
