"""The webhook secret never shows: not in a log record (ours, httpx's or httpcore's, at DEBUG),
not in the outbox, not in a report, not in an exception, its traceback or its frames' locals.
A receiver that echoes the secret back in an error body gets it redacted."""

from __future__ import annotations

import json
import logging
import traceback
from dataclasses import astuple

import pytest
from alert_fixtures import SECRET, queue, spend
from alert_receiver import Answer

from integrations.webhooks import WebhookConfigError, deliver_pending, signature
from orchestration.billing.alerts import Outbox

ECHO = f"bad signature, expected one made with {SECRET}".encode()


def _outbox_text(outbox: Outbox) -> str:
    values = [value for row in outbox.rows() for value in astuple(row)]
    return "\n".join(v.decode() if isinstance(v, bytes) else repr(v) for v in values)


def _log_text(caplog) -> str:
    records = caplog.records
    return "\n".join(
        [caplog.text]
        + [record.getMessage() for record in records]
        + [repr(record.args) + repr(record.__dict__) for record in records]
    )


def _exception_text(error: BaseException) -> str:
    """What a traceback shows, and what a crash reporter that captures locals would."""
    locals_seen = [
        repr(value)
        for frame, _ in traceback.walk_tb(error.__traceback__)
        for value in frame.f_locals.values()
    ]
    return "".join(traceback.format_exception(error)) + "\n".join(locals_seen)


def _deliver_every_way(outbox, receiver, refused_url) -> list:
    """Success, 500 retries, a 400 and a 503 that echo the secret, a timeout, a refusal."""
    reports = []
    fast = {"max_attempts": 3, "backoff_seconds": 0.0, "timeout_seconds": 1.0}
    cases = [
        (200,),
        (500, 500, 200),
        (Answer(400, body=ECHO),),
        (Answer(200, delay=3.0), 200),
        (Answer(503, body=ECHO),) * 3,  # stays pending, then meets the refusal below
    ]
    for number, answers in enumerate(cases):
        queue(outbox, spend("60", subscription=f"sub_{number}"))
        receiver.script(*answers)
        reports.append(deliver_pending(outbox, receiver.url, SECRET, **fast))
    queue(outbox, spend("60", subscription="sub_refused"))
    reports.append(deliver_pending(outbox, refused_url, SECRET, **fast))
    return reports


def test_the_secret_is_absent_from_logs_outbox_and_reports(
    outbox, receiver, refused_url, caplog, capsys
):
    caplog.set_level(logging.DEBUG)  # every logger: ours, httpx's, httpcore's
    reports = _deliver_every_way(outbox, receiver, refused_url)

    statuses = sorted(row.status for row in outbox.rows())
    assert statuses == ["delivered"] * 3 + ["pending"] * 2 + ["rejected"]
    assert any(r.name.startswith("httpcore") for r in caplog.records)  # DEBUG was captured
    assert any("[redacted]" in (row.last_error or "") for row in outbox.rows())  # the echo
    captured = capsys.readouterr()
    texts = {
        "logs": _log_text(caplog),
        "outbox": _outbox_text(outbox),
        "reports": "\n".join(repr(r) + json.dumps(r.metadata()) for r in reports),
        "stdout": captured.out + captured.err,
    }
    for where, text in texts.items():
        assert SECRET not in text, where


def test_httpx_logs_no_request_headers_at_debug(outbox, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    [notification] = queue(outbox, spend("60"))
    deliver_pending(outbox, receiver.url, SECRET)
    sent = receiver.requests[0].headers["meterbook-signature"]
    assert sent == signature(SECRET, notification.body())
    logs = _log_text(caplog)
    assert "send_request_headers" in logs  # httpcore traced the request at DEBUG...
    assert sent not in logs and sent.removeprefix("sha256=") not in logs  # ...not its headers
    assert "meterbook-signature" not in logs.lower()


def test_a_url_that_holds_the_secret_is_refused_without_quoting_either(outbox, caplog):
    caplog.set_level(logging.DEBUG)
    queue(outbox, spend("60"))
    with pytest.raises(WebhookConfigError) as raised:
        deliver_pending(outbox, f"https://hooks.example/x?sig={SECRET}", SECRET)
    assert SECRET not in _exception_text(raised.value)
    assert "hooks.example" not in str(raised.value)
    assert SECRET not in _log_text(caplog)


def test_an_exception_out_of_a_delivery_carries_no_secret_even_in_its_frames(outbox, receiver):
    queue(outbox, spend("60"))
    receiver.script(500)

    def sleep_interrupted(seconds: float) -> None:
        raise RuntimeError("interrupted while backing off")

    with pytest.raises(RuntimeError) as raised:
        deliver_pending(outbox, receiver.url, SECRET, sleep=sleep_interrupted)
    text = _exception_text(raised.value)
    assert "deliver_pending" in text and "_Signer([redacted])" in text
    assert SECRET not in text
