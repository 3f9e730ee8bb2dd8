"""`meterbook serve`'s API (SPEC 9) on a real uvicorn server, answering from snapshots written
as the publisher writes them (write_atomically)."""

from __future__ import annotations

import json
import logging
import os
import time

import httpx
import pytest
from serve_snapshots import FEATURES, publish, snapshot_document

from orchestration.billing.entitlements.publish import snapshot_path, write_atomically
from orchestration.serve.loading import Snapshot
from orchestration.serve.server import running_server

POLL_SECONDS = 0.02


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def published(home):
    return publish(home, generation=7)


@pytest.fixture
def client(home, published):
    with running_server(home, poll_seconds=POLL_SECONDS) as url, httpx.Client(base_url=url) as c:
        yield c


def stored(document, customer_id):
    return document["customers"][customer_id]


def test_one_feature_is_the_stored_document_byte_for_byte(client, published):
    answer = client.get("/v1/customers/acme/entitlements/emails")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    expected = stored(published, "acme")["entitlements"]["emails"]
    assert answer.json() == expected
    assert answer.json() == {
        "customer_id": "acme",
        "feature": "emails",
        "type": "limit",
        "has_access": True,
        "limit": "10000",
        "used": "7",
        "remaining": "9993",
        "soft": True,
        "period_start": "2026-10-01",
        "period_end": "2026-11-01",
        "as_of": "2026-10-20T13:00:07Z",
    }
    assert answer.content == json.dumps(expected, sort_keys=True, separators=(",", ":")).encode()


def test_decimals_stay_strings_and_a_boolean_feature_has_null_quantities(client):
    calls = client.get("/v1/customers/globex/entitlements/api_calls").json()
    assert (calls["limit"], calls["used"], calls["remaining"]) == ("2500.5", "7", "2493.5")
    sso = client.get("/v1/customers/globex/entitlements/sso").json()
    assert sso["type"] == "boolean" and sso["has_access"] is True
    assert (sso["limit"], sso["used"], sso["remaining"]) == (None, None, None)


def test_all_entitlements_sorted_by_feature_code(client, published):
    answer = client.get("/v1/customers/initech/entitlements")
    assert answer.status_code == 200
    body = answer.json()
    assert list(body) == ["customer_id", "as_of", "entitlements"]
    assert body["customer_id"] == "initech"
    assert body["as_of"] == published["as_of"] == "2026-10-20T13:00:07Z"
    documents = stored(published, "initech")["entitlements"]
    assert body["entitlements"] == [documents[code] for code in sorted(FEATURES)]
    assert [e["feature"] for e in body["entitlements"]] == ["api_calls", "emails", "sso"]


def test_usage_is_the_stored_month_so_far(client, published):
    answer = client.get("/v1/customers/acme/usage")
    assert answer.status_code == 200
    assert answer.json() == stored(published, "acme")["usage"]
    assert answer.json()["meters"] == {"emails": "7", "calls": "7.25"}


def test_healthz(client):
    answer = client.get("/healthz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "as_of": "2026-10-20T13:00:07Z",
        "published_at": "2026-10-20T14:00:07Z",
        "customers": 3,
    }


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/nobody/entitlements",
        "/v1/customers/nobody/entitlements/emails",
        "/v1/customers/nobody/usage",
    ],
)
def test_unknown_customer_is_a_json_404(client, path):
    answer = client.get(path)
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {
        "error": {"code": "unknown_customer", "message": "no customer 'nobody'"}
    }


def test_unknown_feature_is_a_json_404(client):
    answer = client.get("/v1/customers/acme/entitlements/teleport")
    assert answer.status_code == 404
    assert answer.json() == {
        "error": {"code": "unknown_feature", "message": "no feature 'teleport'"}
    }


def test_a_feature_missing_from_one_customer_is_a_404_naming_the_customer(home):
    document = snapshot_document(1)
    del document["customers"]["acme"]["entitlements"]["sso"]
    write_atomically(snapshot_path(home), document)
    with running_server(home) as url:
        answer = httpx.get(f"{url}/v1/customers/acme/entitlements/sso")
        listed = httpx.get(f"{url}/v1/customers/acme/entitlements").json()["entitlements"]
    assert answer.status_code == 404
    assert answer.json()["error"] == {
        "code": "unknown_feature",
        "message": "no feature 'sso' for customer 'acme'",
    }
    assert [e["feature"] for e in listed] == ["api_calls", "emails"]


def test_head_is_a_get_without_its_body(client):
    answer = client.head("/v1/customers/acme/entitlements/emails")
    assert (answer.status_code, answer.content) == (200, b"")


def test_other_errors_are_json_too(client):
    missing = client.get("/v1/nothing/here")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        refused = client.request(method, "/v1/customers/acme/entitlements/emails")
        assert refused.status_code == 405, method
        assert refused.headers["content-type"] == "application/json"
        assert set(refused.headers["allow"].split(", ")) == {"GET", "HEAD"}
        assert refused.json()["error"]["code"] == "method_not_allowed"


def test_503_before_any_snapshot_then_served_once_published(home):
    with running_server(home, poll_seconds=POLL_SECONDS) as url, httpx.Client(base_url=url) as c:
        health = c.get("/healthz")
        assert (health.status_code, health.json()) == (503, {"status": "no_snapshot"})
        for path in ("/v1/customers/acme/entitlements/emails", "/v1/customers/acme/usage"):
            answer = c.get(path)
            assert answer.status_code == 503
            assert answer.json()["error"]["code"] == "no_snapshot"
        publish(home, generation=1)
        answer = wait_for(
            c, "/v1/customers/acme/entitlements/emails", lambda a: a.status_code == 200
        )
        assert answer.json()["used"] == "1"


def test_a_replaced_snapshot_is_served_within_a_second(client, home):
    assert client.get("/v1/customers/acme/entitlements/emails").json()["used"] == "7"
    publish(home, generation=8)
    answer = wait_for(
        client, "/v1/customers/acme/entitlements/emails", lambda a: a.json()["used"] == "8"
    )
    assert answer.json()["remaining"] == "9992"
    assert client.get("/healthz").json()["as_of"] == "2026-10-20T13:00:08Z"


@pytest.mark.parametrize(
    "corrupt",
    [
        b'{"format": 1, "customers": {"acme": {"entitlements": {',  # cut off
        b"not json at all",
        b"",
        b'{"format": 2, "as_of": null, "features": {}, "customers": {}}',  # a format not known
    ],
    ids=["truncated", "garbage", "empty", "format-2"],
)
def test_an_unreadable_snapshot_keeps_the_previous_one_served(client, home, corrupt, caplog):
    path = snapshot_path(home)
    temporary = path.with_name(".corrupt.tmp")
    temporary.write_bytes(corrupt)
    with caplog.at_level(logging.WARNING, logger="orchestration.serve.snapshot"):
        os.replace(temporary, path)  # as the publisher replaces it: atomically
        deadline = time.monotonic() + 2
        while "not a snapshot" not in caplog.text and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
    assert "still serving the one published at 2026-10-20T14:00:07Z" in caplog.text
    answer = client.get("/v1/customers/acme/entitlements/emails")
    assert (answer.status_code, answer.json()["used"]) == (200, "7")
    assert client.get("/healthz").status_code == 200
    publish(home, generation=9)  # the next good one is taken up
    wait_for(client, "/v1/customers/acme/entitlements/emails", lambda a: a.json()["used"] == "9")


def wait_for(client: httpx.Client, path: str, done, seconds: float = 1.0) -> httpx.Response:
    deadline = time.monotonic() + seconds
    while True:
        answer = client.get(path)
        if done(answer):
            return answer
        assert time.monotonic() < deadline, f"{path} still answers {answer.text}"
        time.sleep(POLL_SECONDS)


def test_a_server_error_is_json(client, monkeypatch):
    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(Snapshot, "entitlement_list", broken)
    answer = client.get("/v1/customers/acme/entitlements")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "internal_error"
    assert client.get("/v1/customers/acme/entitlements/emails").status_code == 200
