"""Entitlements end to end (SPEC 9): events land, `ingest` runs as a Dagster run, and a real
uvicorn server on 127.0.0.1 answers from the snapshot it published; alerts reach a real
receiver on 127.0.0.1. One workspace, ingested step by step as its usage grows.

- c1 (plan basic): emails hard limit 10; api_calls soft limit 5 (free 5, then 1.00 each).
- c2 (plan basic): emails override 100 from 2026-10-10 to 2026-10-20, the plan's 10 outside.
- alert `emails_watch`: usage of emails at 5, 8 and 10.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from orchestration.demo.receiver import webhook_receiver
from orchestration.pipeline import run_job
from orchestration.serve.server import running_server
from orchestration.workspace import Workspace

pytestmark = pytest.mark.slow

CATALOG = """
settings: {invoice_prefix: EN, grace_days: 3, default_currency: USD}
meters:
  - {code: emails, name: Emails, event_name: email.sent, aggregation: count}
  - {code: api_calls, name: API calls, event_name: api.request, aggregation: count}
features:
  - {code: sso, type: boolean}
  - {code: emails, type: limit, meter: emails}
  - {code: api, type: limit, meter: api_calls}
  - {code: exports, type: boolean}
plans:
  - code: basic
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        entitlements:
          sso: true
          emails: {limit: 10}
          api: {limit: 5, soft: true}
        charges:
          - {meter: api_calls, model: per_unit, unit_price: "1.00", free_units: 5}
customers:
  - {id: c1, currency: USD}
  - {id: c2, currency: USD}
subscriptions:
  - {id: sub_c1, customer_id: c1, plan: basic, start_date: 2026-10-01}
  - id: sub_c2
    customer_id: c2
    plan: basic
    start_date: 2026-10-01
    entitlement_overrides:
      - {feature: emails, limit: 100, effective_from: 2026-10-10, effective_to: 2026-10-20}
alerts:
  - {code: emails_watch, plan: basic, metric: usage, meter: emails, thresholds: ["5", "8", "10"]}
"""
SECRET_ENV = "METERBOOK_E2E_WEBHOOK_SECRET"


def _events(name: str, customer: str, day: str, count: int, event: str = "email.sent") -> str:
    return "".join(
        json.dumps(
            {
                "event_id": f"{name}-{customer}-{i}",
                "customer_id": customer,
                "event_name": event,
                "timestamp": f"{day}T09:{i:02d}:00Z",
                "properties": {},
            }
        )
        + "\n"
        for i in range(count)
    )


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Workspace:
    ws = Workspace(tmp_path / "home")
    (ws.catalog_dir).mkdir(parents=True)
    (ws.catalog_dir / "catalog.yaml").write_text(CATALOG)
    ws.landing_dir.mkdir(parents=True)
    # run_job points this process at the workspace: monkeypatch puts everything back after
    for name in ("METERBOOK_HOME", "METERBOOK_WAREHOUSE", "DAGSTER_HOME"):
        monkeypatch.setenv(name, "unset")
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.setenv("METERBOOK_NOW", "2026-11-10T00:00:00Z")
    monkeypatch.setenv(SECRET_ENV, "e2e-secret-value")
    return ws


def _land(ws: Workspace, name: str, text: str) -> None:
    (ws.landing_dir / f"{name}.jsonl").write_text(text)


def _run(ws: Workspace, job: str, partition: str | None = None) -> None:
    outcome = run_job(ws, job, partition)
    assert outcome.success, outcome.error


def _answer(url: str, as_of: str, customer: str, feature: str) -> dict:
    """The API's answer once it serves the snapshot of `as_of` (it reloads within 0.2 s)."""
    deadline = time.monotonic() + 10
    while True:
        answer = httpx.get(f"{url}/v1/customers/{customer}/entitlements/{feature}").json()
        if answer.get("as_of") == as_of or time.monotonic() > deadline:
            return answer
        time.sleep(0.05)


def test_entitlements_and_alerts_follow_ingested_usage(workspace):
    ws = workspace
    with webhook_receiver("e2e-secret-value") as received:
        (ws.catalog_dir / "webhook.yaml").write_text(
            f'settings:\n  webhook: {{url: "{received.url}", secret_env: {SECRET_ENV}}}\n'
        )
        # 1. October 5: c1 at 8 of 10 emails, 7 calls (soft 5); c2 at 12 of the plan's 10
        _land(ws, "d05", _events("d05", "c1", "2026-10-05", 8) + _events("d05", "c2", "2026-10-05", 12)
              + _events("d05a", "c1", "2026-10-05", 7, "api.request"))  # fmt: skip
        _run(ws, "ingest_landing_files")
        with running_server(ws.home) as url:
            c1 = _answer(url, "2026-10-05T09:11:00Z", "c1", "emails")
            assert (c1["has_access"], c1["limit"], c1["used"], c1["remaining"]) == (
                True, "10", "8", "2",
            )  # fmt: skip
            assert (c1["period_start"], c1["period_end"]) == ("2026-10-01", "2026-11-01")
            api = _answer(url, c1["as_of"], "c1", "api")
            assert (api["has_access"], api["soft"], api["used"], api["remaining"]) == (
                True, True, "7", "0",
            )  # fmt: skip
            c2 = _answer(url, c1["as_of"], "c2", "emails")
            assert (c2["has_access"], c2["limit"], c2["used"]) == (False, "10", "12")
            assert _answer(url, c1["as_of"], "c1", "sso")["has_access"] is True
            assert _answer(url, c1["as_of"], "c1", "exports")["has_access"] is False
            missing = httpx.get(f"{url}/v1/customers/nobody/entitlements/emails")
            assert missing.status_code == 404 and "error" in missing.json()

            # 2. October 12: c1 reaches its hard limit; c2's override (100) is in force
            _land(
                ws,
                "d12",
                _events("d12", "c1", "2026-10-12", 3) + _events("d12", "c2", "2026-10-12", 1),
            )
            _run(ws, "ingest_landing_files")
            c1 = _answer(url, "2026-10-12T09:02:00Z", "c1", "emails")
            assert (c1["has_access"], c1["used"], c1["remaining"]) == (False, "11", "0")
            c2 = _answer(url, c1["as_of"], "c2", "emails")
            assert (c2["has_access"], c2["limit"], c2["used"]) == (True, "100", "13")

            # 3. October 22: the override has ended, the plan's 10 again
            _land(ws, "d22", _events("d22", "c2", "2026-10-22", 1))
            _run(ws, "ingest_landing_files")
            c2 = _answer(url, "2026-10-22T09:00:00Z", "c2", "emails")
            assert (c2["has_access"], c2["limit"], c2["used"]) == (False, "10", "14")

        # an ingest refreshes the API only; the close also redraws the month-so-far pages
        assert not (ws.documents_dir / "usage").exists()
        # the soft limit's overage is billed: 7 calls, 5 free, 2 at 1.00
        _run(ws, "month_end_close", "2026-10")
        assert "c2" in (ws.documents_dir / "usage" / "c2.html").read_text()
    _assert_overage_billed(ws)
    _assert_alerts(received)
    _assert_secret_nowhere(ws.home)


def _assert_secret_nowhere(home: Path) -> None:
    """Not in the run logs, the Dagster instance (events, asset metadata), the outbox, the
    warehouse or anything else the runs left in the workspace."""
    secret = b"e2e-secret-value"
    holding = [p for p in home.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert holding == [], holding
    assert any((home / "dagster").rglob("*.db")), "the Dagster instance was not where expected"


def _assert_overage_billed(ws: Workspace) -> None:
    from orchestration.reports import invoices_text  # noqa: PLC0415

    invoices = json.loads(invoices_text(ws, "2026-10", "c1", as_json=True))
    (invoice,) = invoices if isinstance(invoices, list) else invoices["invoices"]
    (line,) = [li for li in invoice["lines"] if li.get("meter") == "api_calls"]
    assert (line["quantity"], line["amount"]) == ("7", "2.00"), line


def _assert_alerts(received) -> None:
    bodies = sorted(
        (b["subscription_id"], b["threshold"], tuple(b["thresholds_crossed"]), b["value"])
        for b in received.bodies
    )
    # c1: 8 crossed 5 and 8 at once (one notification), then 11 crossed 10; c2: 12 crossed
    # all three at once; nothing fires twice across the four runs
    assert bodies == [
        ("sub_c1", "10", ("10",), "11"),
        ("sub_c1", "8", ("5", "8"), "8"),
        ("sub_c2", "10", ("5", "8", "10"), "12"),
    ], bodies
    assert all(received.signatures_valid)
