"""Deliveries against a real HTTP receiver on 127.0.0.1: signed, keyed, retried on 5xx and
timeouts with backoff, never retried on 4xx, left pending when the retries run out."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from alert_fixtures import SECRET, queue, spend, usage
from alert_receiver import Answer

from integrations.webhooks import WebhookConfigError, deliver_pending, signature, verify
from orchestration.billing.alerts import Outbox, outbox_path


def test_two_500s_then_a_200_deliver_once_with_one_key_and_a_valid_signature(
    outbox, receiver, sleeps
):
    [notification] = queue(outbox, spend("130.00"))
    receiver.script(500, 500, 200)
    report = deliver_pending(outbox, receiver.url, SECRET, sleep=sleeps.append)

    assert (report.delivered, report.rejected, report.pending) == (1, 0, 0)
    assert report.by_key()[notification.key].attempts == 3
    assert sleeps == [0.2, 0.4]  # backoff_seconds * 2**n
    assert len(receiver.requests) == 3
    assert receiver.keys() == [notification.key] * 3
    for request in receiver.requests:
        assert (request.method, request.path) == ("POST", "/hooks/meterbook")
        assert request.body == notification.body()
        assert request.headers["content-type"] == "application/json"
        assert verify(SECRET, request.body, request.headers["meterbook-signature"])
        assert request.headers["meterbook-signature"] == signature(SECRET, request.body)
    [row] = outbox.rows()
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 3, 200)
    assert row.delivered_at is not None and row.last_error is None
    assert deliver_pending(outbox, receiver.url, SECRET).outcomes == ()
    assert len(receiver.requests) == 3


def test_the_signature_is_sha256_hmac_in_lowercase_hex():
    # RFC 4231 test case 2
    assert signature("Jefe", b"what do ya want for nothing?") == (
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    assert not verify("Jefe", b"what do ya want for nothing!", signature("Jefe", b"x"))
    assert not verify("Jefe", b"x", None)


def test_a_400_is_recorded_as_rejected_and_never_sent_again(outbox, receiver, sleeps):
    [notification] = queue(outbox, spend("60.00"))
    receiver.script(Answer(400, body=b'{"error": "unknown subscription"}'))
    report = deliver_pending(outbox, receiver.url, SECRET, sleep=sleeps.append)
    assert (report.delivered, report.rejected, report.pending) == (0, 1, 0)
    assert len(receiver.requests) == 1 and sleeps == []
    [row] = outbox.rows()
    assert (row.status, row.attempts, row.last_status_code) == ("rejected", 1, 400)
    assert row.last_error.startswith("HTTP 400") and "unknown subscription" in row.last_error

    again = deliver_pending(outbox, receiver.url, SECRET, sleep=sleeps.append)
    assert again.outcomes == () and len(receiver.requests) == 1

    # an operator fixed the receiver and puts it back: same key, same bytes
    assert outbox.requeue_rejected() == 1
    assert deliver_pending(outbox, receiver.url, SECRET).delivered == 1
    assert receiver.keys() == [notification.key] * 2
    assert receiver.requests[0].body == receiver.requests[1].body
    [row] = outbox.rows()
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 2, 200)


def test_a_timeout_is_retried_and_then_delivered(outbox, receiver, sleeps):
    [notification] = queue(outbox, spend("60.00"))
    receiver.script(Answer(200, delay=3.0), 200)
    report = deliver_pending(outbox, receiver.url, SECRET, timeout_seconds=1.0, sleep=sleeps.append)
    assert report.delivered == 1 and sleeps == [0.2]
    assert receiver.keys() == [notification.key] * 2
    [row] = outbox.rows()
    assert (row.status, row.attempts) == ("delivered", 2)


def test_retries_run_out_the_row_stays_pending_and_a_later_call_delivers_it(
    outbox, receiver, sleeps
):
    [notification] = queue(outbox, usage("1000000"))
    receiver.default = Answer(503, body=b"maintenance")
    report = deliver_pending(outbox, receiver.url, SECRET, max_attempts=3, sleep=sleeps.append)
    assert (report.delivered, report.rejected, report.pending) == (0, 0, 1)
    assert sleeps == [0.2, 0.4]  # no wait after the last attempt
    [row] = outbox.pending()
    assert (row.attempts, row.last_status_code) == (3, 503)
    assert row.last_error == "HTTP 503: maintenance"

    receiver.default = Answer(200)
    later = deliver_pending(outbox, receiver.url, SECRET, max_attempts=3, sleep=sleeps.append)
    assert later.delivered == 1
    [row] = outbox.rows()
    assert (row.status, row.attempts, row.last_error) == ("delivered", 4, None)
    assert receiver.keys() == [notification.key] * 4
    assert len({r.body for r in receiver.requests}) == 1


def test_a_refused_connection_leaves_everything_pending_without_hammering(
    outbox, refused_url, sleeps
):
    first, second = queue(outbox, spend("60"), spend("60", subscription="sub_b"))
    report = deliver_pending(outbox, refused_url, SECRET, max_attempts=2, sleep=sleeps.append)
    assert report.pending == 2 and sleeps == [0.2]
    outcomes = report.by_key()
    assert outcomes[first.key].attempts == 2
    assert outcomes[first.key].error.startswith("connection error: ConnectError")
    assert outcomes[second.key].attempts == 0  # the receiver is down: not attempted
    rows = {row.key: row for row in outbox.rows()}
    assert (rows[first.key].status, rows[first.key].attempts) == ("pending", 2)
    assert (rows[second.key].status, rows[second.key].attempts) == ("pending", 0)


def test_a_5xx_on_one_row_does_not_hold_up_the_next(outbox, receiver, sleeps):
    first, second = queue(outbox, spend("60"), spend("60", subscription="sub_b"))
    receiver.script(500, 500, 200)
    report = deliver_pending(outbox, receiver.url, SECRET, max_attempts=2, sleep=sleeps.append)
    assert report.by_key()[first.key].status == "pending"
    assert report.by_key()[second.key].status == "delivered"
    assert receiver.keys() == [first.key, first.key, second.key]


def test_a_redirect_is_not_followed_and_the_row_waits_for_a_fixed_url(outbox, receiver, sleeps):
    queue(outbox, spend("60"))
    receiver.script(Answer(307, headers=(("Location", receiver.url + "/elsewhere"),)))
    report = deliver_pending(outbox, receiver.url, SECRET, sleep=sleeps.append)
    assert report.pending == 1 and sleeps == []
    assert [r.path for r in receiver.requests] == ["/hooks/meterbook"]
    [row] = outbox.pending()
    assert row.last_status_code == 307 and "redirects are not followed" in row.last_error


def test_the_oldest_notification_goes_first(tmp_path, receiver):
    start = datetime(2026, 10, 20, 13, 0, tzinfo=UTC)
    ticks = iter(start + timedelta(minutes=m) for m in range(20))
    outbox = Outbox(outbox_path(tmp_path), clock=lambda: next(ticks))
    [later] = queue(outbox, spend("60", subscription="sub_z"))
    [earlier] = queue(outbox, spend("60", subscription="sub_a"))
    deliver_pending(outbox, receiver.url, SECRET)
    assert receiver.keys() == [later.key, earlier.key]


def test_logged_urls_carry_no_userinfo_or_query(outbox, receiver, caplog):
    caplog.set_level(logging.DEBUG)
    queue(outbox, spend("60"))
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://hookuser:hookpass@127.0.0.1:{port}/hooks/meterbook?tenant=t1"
    report = deliver_pending(outbox, url, SECRET)
    assert report.delivered == 1 and report.url == f"http://127.0.0.1:{port}/hooks/meterbook"
    assert receiver.requests[0].path == "/hooks/meterbook?tenant=t1"  # still sent as given
    assert any(r.name == "httpx" for r in caplog.records)  # httpx's own line is there...
    for text in ("hookuser", "hookpass", "tenant=t1"):
        assert text not in caplog.text  # ...without them


@pytest.mark.parametrize(
    ("url", "secret", "message"),
    [
        ("http://billing-hooks.example/meterbook", SECRET, "must use https"),
        ("ftp://127.0.0.1/meterbook", SECRET, "http(s) URL"),
        ("http://127.0.0.1:notaport/x", SECRET, "not a valid URL"),
        ("http://127.0.0.1/x", "", "secret is empty"),
        (f"https://hooks.example/x?token={SECRET}", SECRET, "contains the webhook secret"),
    ],
)
def test_unusable_settings_are_refused_before_anything_is_sent(outbox, url, secret, message):
    queue(outbox, spend("60"))
    with pytest.raises(WebhookConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        deliver_pending(outbox, url, secret)
    assert outbox.rows()[0].attempts == 0
