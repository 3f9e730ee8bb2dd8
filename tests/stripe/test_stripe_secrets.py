"""The API key never shows in a log line, an exception or returned metadata."""

from __future__ import annotations

import json
import logging
import traceback

import pytest
from stripe_fixtures import API_KEY, PERIOD, catalog, insert_standard_ledger, make_gateway

from integrations.stripe.client import StripeConfig, StripeGateway
from integrations.stripe.errors import StripeConfigError, StripeUnavailable
from integrations.stripe.status import pull_payment_status
from integrations.stripe.sync import sync_period
from orchestration.defs.stripe.resource import StripeResource
from orchestration.workspace import now_utc

WRONG_KEY = "sk_test_wrongKeyThatMustNeverLeak_91c2"


def assert_absent(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text


def test_key_absent_from_logs_errors_and_metadata_on_a_good_run(
    warehouse, gateway, stripe_double, caplog, capsys
):
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and urllib3's included
    insert_standard_ledger(warehouse)
    stripe_double.inject(3, "500")  # a retry, so the retry path logs too
    result = sync_period(warehouse, catalog(), PERIOD, gateway)
    pulled = pull_payment_status(warehouse, gateway, now_utc())
    assert not result.failures
    assert caplog.records  # the capture did see logging
    captured = capsys.readouterr()
    assert_absent(
        API_KEY,
        caplog.text,
        json.dumps(result.metadata()),
        json.dumps(pulled.metadata()),
        repr(gateway),
        captured.out,
        captured.err,
    )


def test_a_rejected_key_echoed_by_the_server_is_redacted_everywhere(
    warehouse, stripe_double, sleeps, caplog
):
    caplog.set_level(logging.DEBUG)
    insert_standard_ledger(warehouse)
    wrong = StripeGateway(
        StripeConfig(api_key=WRONG_KEY, api_base=stripe_double.url), sleep=sleeps.append
    )
    result = sync_period(warehouse, catalog(), PERIOD, wrong)
    assert len(result.failures) == 3
    assert "HTTP 401" in result.failures[0].error
    assert "[redacted]" in result.failures[0].error  # the server did echo it
    messages = [record.getMessage() for record in caplog.records]
    assert any("[redacted]" in m for m in messages)  # ...and the SDK did log it
    assert_absent(
        WRONG_KEY,
        caplog.text,
        *messages,
        json.dumps(result.metadata()),
        *(o.error or "" for o in result.outcomes),
    )
    with pytest.raises(Exception) as raised:
        result.raise_for_failures()
    assert_absent(WRONG_KEY, "".join(traceback.format_exception(raised.value)))


def test_exceptions_carry_no_key_in_message_or_traceback(warehouse, stripe_double, sleeps):
    insert_standard_ledger(warehouse)
    stripe_double.inject(1, "die_before")
    gateway = make_gateway(stripe_double.url, sleeps)
    with pytest.raises(StripeUnavailable) as raised:
        sync_period(warehouse, catalog(), PERIOD, gateway)
    text = "".join(traceback.format_exception(raised.value))
    assert "GET /v1/customers/search" in text
    assert raised.value.__context__ is None and raised.value.__cause__ is None
    assert_absent(API_KEY, text, repr(raised.value))


def test_config_and_resource_never_hold_the_key_in_view(monkeypatch, stripe_double, warehouse):
    config = StripeConfig(api_key=API_KEY, api_base=stripe_double.url)
    assert_absent(API_KEY, repr(config), str(config))
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", stripe_double.url)
    resource = StripeResource(max_attempts=2)
    assert_absent(API_KEY, repr(resource), json.dumps(resource.model_dump()))
    gateway = resource.gateway()
    assert gateway.api_base == stripe_double.url
    insert_standard_ledger(warehouse)
    assert not sync_period(warehouse, catalog(), PERIOD, gateway).failures
    monkeypatch.delenv("STRIPE_API_KEY")
    with pytest.raises(StripeConfigError, match="STRIPE_API_KEY is not set"):
        resource.gateway()
