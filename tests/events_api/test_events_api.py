"""`POST /v1/events` and `GET /v1/status` (SPEC 2.1, 9) against a real uvicorn server on
127.0.0.1: batches answered per event, keys (401/403, customers, revocation without a
restart, the key never written down), 413 and 429, a server killed with its landing file
open, files never read half written, and the status the ingest and `follow` leave behind.

The fast tests run the server only; the slow ones (marked like the e2e tests) run the ingest
job, four Dagster runs in all.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from orchestration.billing.entitlements.publish import snapshot_path
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.follow import follow
from orchestration.ingest.discovery import list_landing_files
from orchestration.ingest.ingest import pending_files
from orchestration.ingest.refresh_status import ingest_status_path, read_json
from orchestration.pipeline import run_job
from orchestration.reports import events_text
from orchestration.serve.api_keys import key_hash, new_key
from orchestration.serve.server import running_server
from orchestration.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
JSON = "application/json"
NDJSON = "application/x-ndjson"
CLOUDEVENTS_BATCH = "application/cloudevents-batch+json"
FILE_NAME = re.compile(r"^api/(\d{4}-\d{2}-\d{2})/(\d{8}T\d{12}Z)-(\d+)-(\d{6})\.ndjson$")
REVOKE_SECONDS = 2.0

CATALOG = """
settings:
  invoice_prefix: EV
  default_currency: USD
  api_keys:
{keys}
  events_api: {events_api}
meters:
  - {{code: calls, name: API calls, event_name: api.call, aggregation: count}}
features:
  - {{code: calls, name: API calls, type: limit, meter: calls}}
plans:
  - code: basic
    currency: USD
    versions:
      - version: 1
        effective_from: 2026-01-01
        entitlements:
          calls: {{limit: 1000000, soft: true}}
        charges:
          - {{meter: calls, model: per_unit, unit_price: "0.01"}}
customers:
  - {{id: c1, currency: USD}}
  - {{id: c2, currency: USD}}
subscriptions:
  - {{id: sub_c1, customer_id: c1, plan: basic, start_date: 2026-10-01}}
  - {{id: sub_c2, customer_id: c2, plan: basic, start_date: 2026-10-01}}
"""


def _catalog_text(keys: list[dict], **events_api) -> str:
    """`keys`: {id, key, customers?, revoked?}; only the key's sha256 is written."""
    lines = []
    for k in keys:
        entry = f"id: {k['id']}, sha256: {key_hash(k['key'])}"
        if k.get("customers"):
            entry += f", customers: [{', '.join(k['customers'])}]"
        if k.get("revoked"):
            entry += ", revoked: true"
        lines.append(f"    - {{{entry}}}")
    settings = ", ".join(f"{name}: {value}" for name, value in events_api.items())
    return CATALOG.format(keys="\n".join(lines), events_api=f"{{{settings}}}")


def _write_catalog(home: Path, keys: list[dict], **events_api) -> None:
    folder = home / "catalog"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "catalog.yaml").write_text(_catalog_text(keys, **events_api))


def _event(i: int, customer: str = "c1", prefix: str = "e", pad: int = 0, day: str = "05") -> dict:
    properties: dict = {"n": i}
    if pad:
        properties["note"] = "x" * pad
    return {
        "event_id": f"{prefix}-{i}",
        "customer_id": customer,
        "event_name": "api.call",
        "timestamp": f"2026-10-{day}T09:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "properties": properties,
    }


def _ndjson(events: list[dict]) -> bytes:
    return b"".join(json.dumps(e).encode() + b"\n" for e in events)


def _post(url: str, key: str | None, body: bytes, content_type: str = JSON) -> httpx.Response:
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return httpx.post(f"{url}/v1/events", content=body, headers=headers, timeout=30)


def _status(url: str) -> dict:
    answer = httpx.get(f"{url}/v1/status", timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _outcomes(answer: httpx.Response) -> list[tuple]:
    """(index, status, reason or None, event_id or None) per event of a 202."""
    assert answer.status_code == 202, answer.text
    return [
        (e["index"], e["status"], e.get("reason"), e.get("event_id"))
        for e in answer.json()["events"]
    ]


def _api_files(landing: Path) -> list:
    return [f for f in list_landing_files(landing) if f.rel.startswith("api/")]


def _open_files(landing: Path) -> list[Path]:
    return sorted((landing / "api").glob(".open-*.ndjson"))


def _lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path.name} ends mid-line"
    return data.split(b"\n")[:-1]


def _wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


def _assert_key_nowhere(home: Path, keys: list[str]) -> None:
    """No file under the workspace (catalog, landing files, warehouse, Dagster's instance and
    logs) holds any of the keys."""
    for key in keys:
        holding = [p for p in home.rglob("*") if p.is_file() and key.encode() in p.read_bytes()]
        assert holding == [], holding


# ---------------------------------------------------------------------------- fast: no pipeline


def test_a_batch_is_answered_per_event_in_order_and_only_the_accepted_land(tmp_path):
    home = tmp_path / "home"
    key = new_key()
    _write_catalog(home, [{"id": "gateway", "key": key}], rotate_seconds=3600)
    landing = home / "landing" / "events"
    good = [_event(i) for i in range(4)]
    good[3]["properties"]["price"] = "placeholder"
    array_parts = [
        json.dumps(good[0]),
        json.dumps({k: v for k, v in good[1].items() if k != "customer_id"}),  # missing
        "42",  # not an object
        json.dumps(good[1]),
        json.dumps({**_event(90), "properties": [1, 2]}),  # properties not an object
        json.dumps({**_event(91), "event_id": "x" * 201}),  # over 200 characters
        json.dumps({**_event(92), "timestamp": True}),  # a boolean is no timestamp
        json.dumps(good[2], indent=2),  # pretty-printed: folded onto one line
        # a decimal reaches the landing file as sent, not as a float
        json.dumps(good[3]).replace('"placeholder"', "1.10"),
    ]
    array = ("[\n  " + ",\n  ".join(array_parts) + "\n]").encode()
    ndjson = _ndjson([_event(10), _event(11)]).replace(b"\n", b'\n{"event_id": "broken\n', 1)
    cloud = [
        {
            "specversion": "1.0",
            "id": f"ce-{i}",
            "source": "gateway",
            "type": "api.call",
            "subject": "c2",
            "time": f"2026-10-05T10:00:0{i}Z",
            "data": {"n": i},
        }
        for i in range(3)
    ]
    del cloud[1]["subject"]
    with running_server(home) as url:
        answer = _post(url, key, array)
        assert _outcomes(answer) == [
            (0, "accepted", None, "e-0"),
            (1, "refused", "missing_field", "e-1"),
            (2, "refused", "malformed", None),
            (3, "accepted", None, "e-1"),
            (4, "refused", "bad_type", "e-90"),
            (5, "refused", "too_large", "x" * 201),
            (6, "refused", "bad_type", "e-92"),
            (7, "accepted", None, "e-2"),
            (8, "accepted", None, "e-3"),
        ]
        assert (answer.json()["accepted"], answer.json()["refused"]) == (4, 5)
        assert all(e["message"] for e in answer.json()["events"] if e["status"] == "refused")
        assert _outcomes(_post(url, key, ndjson, NDJSON)) == [
            (0, "accepted", None, "e-10"),
            (1, "refused", "malformed", None),
            (2, "accepted", None, "e-11"),
        ]
        assert _outcomes(_post(url, key, json.dumps(cloud).encode(), CLOUDEVENTS_BATCH)) == [
            (0, "accepted", None, "ce-0"),
            (1, "refused", "missing_field", "ce-1"),
            (2, "accepted", None, "ce-2"),
        ]
        # still open (rotate_seconds 3600): hidden from the ingest's listing
        assert _api_files(landing) == []
        (open_file,) = _open_files(landing)
        unrotated = _status(url)["events_api"]["unrotated_bytes"]
        assert unrotated == open_file.stat().st_size > 0
    # the server stopped: its open file was renamed, whole
    assert _open_files(landing) == []
    (landed,) = _api_files(landing)
    assert FILE_NAME.match(landed.rel), landed.rel
    assert landed.size_bytes == unrotated
    lines = _lines(landed.path)
    sent = [good[0], good[1], good[2], {**good[3], "properties": {"n": 3, "price": 1.1}}]
    sent += [_event(10), _event(11), cloud[0], cloud[2]]
    assert [json.loads(line) for line in lines] == sent
    assert b'"price": 1.10}' in lines[3]
    assert b"broken" not in landed.path.read_bytes()
    _assert_key_nowhere(home, [key])


def _capture_server_logs(caplog) -> list[logging.Logger]:
    """uvicorn's loggers do not propagate to the root (uvicorn's logging config): caplog's
    handler goes on them directly, and they and ours log everything (TRACE, 5, and up)."""
    caplog.set_level(1)
    attached = [logging.getLogger(n) for n in ("uvicorn", "uvicorn.access")]
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "orchestration"):
        logging.getLogger(name).setLevel(1)
    for logger in attached:
        logger.addHandler(caplog.handler)
    return attached


def test_keys_refused_limited_and_revoked_live_and_never_written_down(tmp_path, caplog):
    home = tmp_path / "home"
    gateway, other, limited, old, stranger, added = (new_key() for _ in range(6))
    keys = [
        {"id": "gateway", "key": gateway},
        {"id": "other", "key": other},
        {"id": "c1_only", "key": limited, "customers": ["c1"]},
        {"id": "old", "key": old, "revoked": True},
    ]
    _write_catalog(home, keys, rotate_seconds=3600)
    catalog_file = home / "catalog" / "catalog.yaml"
    body = _ndjson([_event(0, "c1"), _event(1, "c2")])
    with running_server(home) as url:
        attached = _capture_server_logs(caplog)
        try:
            for headers, code in [
                ({}, "missing_key"),
                ({"Authorization": f"Basic {gateway}"}, "missing_key"),
                ({"Authorization": f"Bearer {stranger}"}, "unknown_key"),
            ]:
                answer = httpx.post(f"{url}/v1/events", content=body, headers=headers)
                assert answer.status_code == 401, answer.text
                assert answer.headers["www-authenticate"] == 'Bearer realm="meterbook"'
                assert answer.headers["content-type"] == JSON
                assert answer.json()["error"]["code"] == code
            revoked = _post(url, old, body)
            assert revoked.status_code == 403, revoked.text
            assert revoked.json()["error"]["code"] == "revoked_key"
            assert _outcomes(_post(url, limited, body, NDJSON)) == [
                (0, "accepted", None, "e-0"),
                (1, "refused", "customer_not_allowed", "e-1"),
            ]
            assert _post(url, gateway, body, NDJSON).json()["accepted"] == 2

            # a catalog that does not load keeps the keys as they were, and says so
            catalog_file.write_text("settings: [not, a, catalog\n")
            _wait_for(
                lambda: any("does not load" in r.getMessage() for r in caplog.records),
                REVOKE_SECONDS,
                "the broken catalog logged",
            )
            assert _post(url, gateway, body, NDJSON).status_code == 202

            # revoked (and one added) by rewriting the catalog: no restart
            keys[0]["revoked"] = True
            keys.append({"id": "added", "key": added})
            catalog_file.write_text(_catalog_text(keys, rotate_seconds=3600))
            started = time.monotonic()
            _wait_for(
                lambda: _post(url, gateway, body, NDJSON).status_code == 403,
                REVOKE_SECONDS,
                "the revoked key refused",
            )
            assert time.monotonic() - started <= REVOKE_SECONDS
            assert _post(url, other, body, NDJSON).json()["accepted"] == 2
            assert _post(url, added, body, NDJSON).json()["accepted"] == 2
            assert _post(url, limited, body, NDJSON).json()["accepted"] == 1
        finally:
            for logger in attached:
                logger.removeHandler(caplog.handler)
    assert caplog.records, "nothing was captured: the check below would prove nothing"
    logged = caplog.text + "".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
    )
    catalog = catalog_file.read_text()
    for key in (gateway, other, limited, old, stranger, added):
        assert key not in logged
    for key in (gateway, other, limited, old, added):
        assert key_hash(key) in catalog
    _assert_key_nowhere(home, [gateway, other, limited, old, stranger, added])


def test_an_oversized_batch_is_413_and_nothing_of_it_lands(tmp_path):
    home = tmp_path / "home"
    key = new_key()
    limits = {"rotate_seconds": 3600, "max_batch_bytes": 1024, "max_batch_events": 3}
    _write_catalog(home, [{"id": "gateway", "key": key}], max_event_bytes=256, **limits)
    landing = home / "landing" / "events"
    with running_server(home) as url:
        big = _ndjson([_event(i, pad=400, prefix="big") for i in range(3)])
        assert len(big) > 1024
        answer = _post(url, key, big, NDJSON)
        assert answer.status_code == 413, answer.text
        assert answer.json()["error"]["code"] == "batch_too_large"

        def chunks():  # no Content-Length: the server stops reading past the bound
            yield big[:600]
            yield big[600:]

        chunked = httpx.post(
            f"{url}/v1/events",
            content=chunks(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": NDJSON},
        )
        assert chunked.status_code == 413, chunked.text

        four = _ndjson([_event(i, prefix="four") for i in range(4)])
        assert len(four) <= 1024
        answer = _post(url, key, four, NDJSON)
        assert answer.status_code == 413, answer.text
        assert "at most 3" in answer.json()["error"]["message"]

        three = [_event(0, prefix="ok"), _event(1, prefix="ok", pad=300), _event(2, prefix="ok")]
        assert _outcomes(_post(url, key, _ndjson(three), NDJSON)) == [
            (0, "accepted", None, "ok-0"),
            (1, "refused", "too_large", None),  # refused unparsed: no event_id
            (2, "accepted", None, "ok-2"),
        ]
    (landed,) = _api_files(landing)
    assert [json.loads(line) for line in _lines(landed.path)] == [three[0], three[2]]


def test_concurrent_posts_never_show_a_file_half_written(tmp_path):
    """4 producers POST for 2 s while files rotate (every 40 events, or 0.5 s); the ingest's
    listing, read at once, only ever shows whole lines, and a file never grows once listed."""
    home = tmp_path / "home"
    key = new_key()
    _write_catalog(home, [{"id": "gateway", "key": key}], rotate_seconds="0.5", rotate_events=40)
    landing = home / "landing" / "events"
    accepted: list[str] = []
    failures: list[str] = []
    done = threading.Event()

    def producer(worker: int, url: str) -> None:
        batch = 0
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            while not done.is_set():
                events = [_event(i, prefix=f"w{worker}b{batch}", pad=50) for i in range(7)]
                answer = client.post(f"{url}/v1/events", content=_ndjson(events))
                if answer.status_code != 202 or answer.json()["accepted"] != 7:
                    failures.append(answer.text)
                    return
                accepted.extend(e["event_id"] for e in events)
                batch += 1

    seen: dict[str, tuple[int, bytes]] = {}
    listings = 0
    with running_server(home) as url:
        threads = [threading.Thread(target=producer, args=(w, url)) for w in range(4)]
        for thread in threads:
            thread.start()
        stop_at = time.monotonic() + 2.0
        try:
            while time.monotonic() < stop_at:
                for f in list_landing_files(landing):
                    assert not any(part.startswith(".") for part in f.rel.split("/")), f.rel
                    data = f.path.read_bytes()
                    assert data.endswith(b"\n"), f"{f.rel} listed with a half line"
                    lines = data.split(b"\n")[:-1]
                    for line in lines:
                        json.loads(line)
                    assert seen.setdefault(f.rel, (len(lines), data)) == (len(lines), data)
                listings += 1
        finally:
            done.set()
            for thread in threads:
                thread.join(30)
    assert failures == []
    assert listings > 10 and len(seen) >= 2, (listings, len(seen))
    ids = []
    for f in _api_files(landing):
        lines = _lines(f.path)
        if f.rel in seen:
            assert seen[f.rel] == (len(lines), f.path.read_bytes()), f.rel
        ids += [json.loads(line)["event_id"] for line in lines]
    assert sorted(ids) == sorted(accepted) and len(set(ids)) == len(ids)
    assert _open_files(landing) == []


# ------------------------------------------------------------------------ slow: the ingest job


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Workspace:
    ws = Workspace(tmp_path / "home")
    ws.landing_dir.mkdir(parents=True)
    # run_job points this process at the workspace: monkeypatch puts everything back after
    for name in ("METERBOOK_HOME", "METERBOOK_WAREHOUSE", "DAGSTER_HOME"):
        monkeypatch.setenv(name, "unset")
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.setenv("METERBOOK_NOW", "2026-10-20T00:00:00Z")
    return ws


def _ingest(ws: Workspace) -> None:
    outcome = run_job(ws, "ingest_landing_files")
    assert outcome.success, outcome.error


def _fates(ws: Workspace) -> dict:
    return json.loads(events_text(ws, None, as_json=True))


def _raw_counts(ws: Workspace, paths: list[str]) -> dict[str, int]:
    """How many times each event_id read from these files is in meterbook_raw.raw_events."""
    with MeterbookWorkspace(home=str(ws.home)).reader() as con:
        rows = con.execute(
            "SELECT event_id, count(*) FROM meterbook_raw.raw_events "
            "WHERE list_contains(?, path) GROUP BY event_id",
            [paths],
        ).fetchall()
    return dict(rows)


SERVE = """
import sys
from pathlib import Path
from orchestration.serve.server import serve
serve(Path(sys.argv[1]), port=0, on_ready=lambda url: print(url, flush=True))
"""


def _start_serve(home: Path) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(home)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = process.stdout.readline().strip()
    if not url.startswith("http://127.0.0.1:"):
        process.kill()
        raise AssertionError(f"serve did not start: {process.communicate()[1]}")
    return process, url


@pytest.mark.slow
def test_acknowledged_events_survive_a_kill_and_a_resend_is_a_duplicate(workspace):
    """`serve` killed (SIGKILL) with its landing file open: the restarted server completes the
    file before it listens, and every acknowledged event is ingested once; the producer's
    retry of the batch is `duplicate`, billing nothing more."""
    ws = workspace
    key = new_key()
    _write_catalog(ws.home, [{"id": "gateway", "key": key}], rotate_seconds=3600)
    n = 40
    batch = _ndjson([_event(i) for i in range(n)])
    batch += b'{"event_id": "no-customer", "event_name": "api.call", "timestamp": 1}\n'
    batch += _ndjson([_event(n)])
    expected = [(i, "accepted", None, f"e-{i}") for i in range(n)]
    expected += [
        (n, "refused", "missing_field", "no-customer"),
        (n + 1, "accepted", None, f"e-{n}"),
    ]
    acknowledged = [f"e-{i}" for i in range(n + 1)]
    stranger = _ndjson([_event(0, customer="nobody", prefix="stranger")])  # the ingest rejects it
    errors = []

    first, url = _start_serve(ws.home)
    try:
        assert _outcomes(_post(url, key, batch, NDJSON)) == expected
        (open_file,) = _open_files(ws.landing_dir)
        assert len(_lines(open_file)) == n + 1
        assert _api_files(ws.landing_dir) == []  # open: the ingest cannot see it
    finally:
        first.kill()
        errors.append(first.communicate(timeout=10)[1])
    assert first.returncode == -signal.SIGKILL
    # a batch the kill interrupted mid-write was never acknowledged: half a line is cut
    with open(open_file, "ab") as handle:
        handle.write(b'{"event_id": "half-writ')

    second, url = _start_serve(ws.home)
    try:
        # started: the file the killed server left open has its final name, whole
        assert not open_file.exists()
        (recovered,) = _api_files(ws.landing_dir)
        assert FILE_NAME.match(recovered.rel).group(3) == str(first.pid), recovered.rel
        assert len(_lines(recovered.path)) == n + 1
        _ingest(ws)
        assert _raw_counts(ws, [recovered.rel]) == dict.fromkeys(acknowledged, 1)
        report = _fates(ws)
        assert report["lines_read"] == n + 1, report  # no half line read as malformed
        assert report["fates"]["billable"] == n + 1, report

        # the producer, never sure its batch arrived, sends it again; then another batch
        assert _outcomes(_post(url, key, batch, NDJSON)) == expected
        assert _post(url, key, stranger, NDJSON).json()["accepted"] == 1
        second.send_signal(signal.SIGTERM)  # a graceful stop renames the open file
        errors.append(second.communicate(timeout=20)[1])
    finally:
        second.kill()
        second.wait()
    assert second.returncode == 0, errors[-1]
    assert "Traceback" not in errors[-1]
    assert _open_files(ws.landing_dir) == []
    _, resent = _api_files(ws.landing_dir)
    assert FILE_NAME.match(resent.rel).group(3) == str(second.pid), resent.rel

    # once more, alone in a file: the very bytes of the recovered file
    with running_server(ws.home) as url:
        assert _post(url, key, batch, NDJSON).json()["accepted"] == n + 1
    _, _, copy = _api_files(ws.landing_dir)
    assert copy.path.read_bytes() == recovered.path.read_bytes()

    _ingest(ws)
    counts = _raw_counts(ws, [recovered.rel, resent.rel])
    assert counts == {**dict.fromkeys(acknowledged, 2), "stranger-0": 1}
    report = _fates(ws)
    assert report["fates"]["billable"] == n + 1, report  # unchanged
    by_file = {f["path"]: f for f in report["files"]}
    assert by_file[recovered.rel]["fates"]["billable"] == n + 1
    assert by_file[resent.rel]["lines_read"] == n + 2
    assert by_file[resent.rel]["fates"]["duplicate"] == n + 1
    assert by_file[resent.rel]["fates"]["rejected"] == 1
    assert report["reasons"]["rejected"] == {"unknown_customer": 1}
    for stderr in errors:
        assert key not in stderr
    _assert_key_nowhere(ws.home, [key])

    # every API file is on record (the last one as a copy of the first): none is backlog
    with running_server(ws.home) as url:
        status = _status(url)
    assert status["events_api"]["backlog_bytes"] == 0, (status, copy.rel)
    assert status["last_ingest"]["api_ingested_through"] == copy.rel.removeprefix("api/")


@pytest.mark.slow
def test_backlog_429_status_and_follow_see_only_rotated_files_whole(workspace):
    """rotate_events 1000: 1200 events of ~950 bytes make one rotated file (1000) and an open
    one (200), over the 1 MiB backlog bound: 429 until the ingest has read the rotated file,
    which it reads whole and alone; the open file becomes a file at the stop, which `follow`
    reads."""
    ws = workspace
    key = new_key()
    settings = {"rotate_seconds": 3600, "rotate_events": 1000, "follow_seconds": 2}
    _write_catalog(ws.home, [{"id": "gateway", "key": key}], max_backlog_bytes=1 << 20, **settings)
    events = [_event(i, pad=800) for i in range(1200)]
    late = [_event(i, prefix="late", day="06") for i in range(5)]

    with running_server(ws.home) as url:
        before = _status(url)
        assert (before["last_ingest"], before["last_refresh"], before["usage_watermark"]) == (
            None, None, None,
        )  # fmt: skip
        assert before["events_api"]["backlog_bytes"] == 0
        for part in (events[:500], events[500:1000]):  # the 1000th event rotates the file
            assert _post(url, key, _ndjson(part), NDJSON).json()["accepted"] == 500
        (first,) = _api_files(ws.landing_dir)
        assert len(_lines(first.path)) == 1000 and _open_files(ws.landing_dir) == []
        assert _status(url)["events_api"]["backlog_bytes"] == first.size_bytes < 1 << 20
        assert _post(url, key, _ndjson(events[1000:]), NDJSON).json()["accepted"] == 200
        (open_file,) = _open_files(ws.landing_dir)
        assert len(_lines(open_file)) == 200
        api = _status(url)["events_api"]
        assert api["unrotated_bytes"] == open_file.stat().st_size
        assert api["backlog_bytes"] == first.size_bytes + open_file.stat().st_size > 1 << 20

        full = _post(url, key, _ndjson(late), NDJSON)
        assert full.status_code == 429, full.text
        assert full.headers["retry-after"] == "2"
        assert full.json()["error"]["code"] == "backlog_full"
        assert _status(url)["events_api"]["unrotated_bytes"] == open_file.stat().st_size

        _ingest(ws)
        ingest = read_json(ingest_status_path(ws.home))
        assert (ingest["files"], ingest["lines_read"]) == (1, 1000)  # not the open file
        report = _fates(ws)
        assert [(f["path"], f["lines_read"]) for f in report["files"]] == [(first.rel, 1000)]
        assert report["fates"]["billable"] == 1000
        through = first.rel.removeprefix("api/")
        status = _wait_for(
            lambda: (
                (s := _status(url))["events_api"]["backlog_bytes"] == open_file.stat().st_size
                and s["usage_watermark"] == "2026-10-05T09:16:39Z"  # event 999's
                and s
            ),
            5,
            "the server read ingest.json and the new snapshot",
        )
        _assert_refresh(ws, status, through, 1000)

        again = _post(url, key, _ndjson(late), NDJSON)
        assert again.status_code == 202 and again.json()["accepted"] == 5
        with MeterbookWorkspace(home=str(ws.home)).reader() as con:
            assert pending_files(con, ws.landing_dir, settle_seconds=0) == []
    (_, second) = _api_files(ws.landing_dir)  # renamed at the stop
    assert len(_lines(second.path)) == 205 and _open_files(ws.landing_dir) == []

    with running_server(ws.home) as url:
        # a restarted server counts the rotated files the ingest has not read as its backlog
        restarted = _status(url)
        assert restarted["events_api"]["backlog_bytes"] == second.size_bytes
        assert restarted["last_ingest"]["api_ingested_through"] == through
        said: list[str] = []
        assert follow(ws, said.append, interval=0.5, cycles=1) == 0
        (line,) = said
        assert re.match(
            r"1 file\(s\), 205 line\(s\) ingested; usage as of 2026-10-06T09:00:04Z; "
            r"lag \d+\.\d s \(Dagster run ",
            line,
        ), line
        status = _wait_for(
            lambda: (
                (s := _status(url))["events_api"]["backlog_bytes"] == 0
                and s["usage_watermark"] == "2026-10-06T09:00:04Z"
                and s
            ),
            5,
            "the server read ingest.json after follow's ingest",
        )
        _assert_refresh(ws, status, second.rel.removeprefix("api/"), 205)
    report = _fates(ws)
    assert [(f["path"], f["lines_read"], f["fates"]["billable"]) for f in report["files"]] == [
        (first.rel, 1000, 1000),
        (second.rel, 205, 205),
    ]
    _assert_key_nowhere(ws.home, [key])


def _assert_refresh(ws: Workspace, status: dict, through: str, lines: int) -> None:
    assert status["last_ingest"]["api_ingested_through"] == through
    assert status["last_ingest"]["lines_read"] == lines
    refresh = status["last_refresh"]
    assert re.fullmatch(r"\d+\.\d{3}", refresh["lag_seconds"]), refresh
    assert Decimal(refresh["lag_seconds"]) < 600
    assert refresh["run_id"] == status["last_ingest"]["run_id"]
    snapshot = json.loads(snapshot_path(ws.home).read_text())
    assert status["usage_watermark"] == snapshot["as_of"] == refresh["usage_watermark"]
    assert status["snapshot_published_at"] == snapshot["published_at"]


@pytest.mark.slow
def test_follow_reports_a_failed_cycle_and_goes_on(workspace):
    """A catalog broken mid-way fails the cycle's run (reported), not the loop."""
    _write_catalog(workspace.home, [{"id": "k", "key": "mbk_k"}])
    (workspace.landing_dir / "a.ndjson").write_bytes(_ndjson([_event(1)]))
    _ingest(workspace)
    later = workspace.landing_dir / "api" / "2026-10-05" / "b.ndjson"  # waits no settle time
    later.parent.mkdir(parents=True)
    later.write_bytes(_ndjson([_event(2)]))
    catalog = workspace.catalog_dir / "catalog.yaml"
    catalog.write_text(catalog.read_text() + "\nmeters: [\n")  # a YAML syntax error
    said: list[str] = []
    # the catalog's own interval, which it cannot give: the loop takes the default
    assert follow(workspace, said.append, cycles=1) == 1
    (line,) = said
    assert line.startswith("ingest_landing_files failed: ") and "catalog" in line, line
    assert line.endswith("retrying next cycle")
