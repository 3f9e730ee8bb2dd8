"""The outbox (a SQLite file): enqueue is idempotent and atomic, what fired is remembered with
its notification, outcomes only move a pending row, and readers never wait on a writer."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from alert_fixtures import NOVEMBER, OCTOBER, queue, spend, usage

from orchestration.billing.alerts import Outbox, notifications_due, outbox_path


def test_the_file_lives_under_the_home_in_wal_mode(tmp_path):
    path = outbox_path(tmp_path)
    assert path == tmp_path / "alerts" / "outbox.sqlite"
    Outbox(path)
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_enqueue_twice_keeps_one_row_each_with_its_exact_body(outbox):
    due = notifications_due([spend("130.00"), usage("2000000")], set())
    assert outbox.enqueue(due) == 2
    assert outbox.enqueue(due) == 0
    assert outbox.enqueue(reversed(due)) == 0
    rows = {row.key: row for row in outbox.rows()}
    assert set(rows) == {n.key for n in due}
    for notification in due:
        row = rows[notification.key]
        assert row.body == notification.body()
        assert row.status == "pending" and row.attempts == 0
        assert row.thresholds_crossed == notification.thresholds_crossed
        assert row.threshold == notification.threshold and row.period_start == OCTOBER
    assert rows[due[1].key].meter == "tokens" and rows[due[0].key].meter is None
    assert outbox.fired() == {
        ("spend_watch", "sub_acme_pro", OCTOBER, "50.00"),
        ("spend_watch", "sub_acme_pro", OCTOBER, "80.00"),
        ("spend_watch", "sub_acme_pro", OCTOBER, "100.00"),
        ("tokens_high", "sub_acme_pro", OCTOBER, "1000000"),
    }


def test_a_batch_that_fails_half_way_leaves_nothing_behind(outbox):
    good, also_good = notifications_due(
        [spend("60.00"), spend("60.00", subscription="sub_b")], set()
    )
    broken = replace(also_good, metric="seats")  # the table's CHECK refuses it
    with pytest.raises(sqlite3.IntegrityError):
        outbox.enqueue([good, broken])
    assert outbox.rows() == [] and outbox.fired() == set()
    assert outbox.enqueue([good, also_good]) == 2


def test_a_notification_computed_from_a_stale_view_is_not_queued(outbox):
    stale_view = outbox.fired()
    queue(outbox, spend("85.00"))  # another process fired 50 and 80 meanwhile
    late = notifications_due([spend("130.00")], stale_view)
    assert late[0].thresholds_crossed == ("50.00", "80.00", "100.00")
    assert outbox.enqueue(late) == 0  # would fire 50 and 80 a second time
    [fresh] = outbox.enqueue_due([spend("130.00")])
    assert fresh.thresholds_crossed == ("100.00",)
    assert outbox.enqueue_due([spend("130.00")]) == []


def test_a_new_period_is_queued_again(outbox):
    queue(outbox, spend("130.00"))
    [november] = outbox.enqueue_due([spend("130.00", period=NOVEMBER)])
    assert november.period_start == NOVEMBER
    assert len(outbox.rows()) == 2


def test_outcomes_move_a_pending_row_once_and_count_every_attempt(tmp_path):
    times = iter(datetime(2026, 10, 20, 13, 0, tzinfo=UTC) + timedelta(seconds=s) for s in range(9))
    outbox = Outbox(outbox_path(tmp_path), clock=lambda: next(times))
    a, b, c = queue(
        outbox, spend("60"), spend("60", subscription="b"), spend("60", subscription="c")
    )
    assert [r.key for r in outbox.pending()] == sorted([a.key, b.key, c.key])  # same created_at
    assert outbox.rows()[0].created_at == "2026-10-20T13:00:00.000Z"

    assert outbox.record_attempt_failure(a.key, 5, "HTTP 503", 503)
    assert outbox.mark_delivered(a.key, 200, 2)
    assert outbox.mark_rejected(b.key, 422, 1, "HTTP 422: unknown alert")
    assert not outbox.mark_delivered(a.key, 200, 1)  # delivered stays as it was
    assert not outbox.record_attempt_failure(b.key, 1, "late")  # rejected stays rejected

    rows = {row.key: row for row in outbox.rows()}
    assert (rows[a.key].status, rows[a.key].attempts, rows[a.key].last_error) == (
        "delivered",
        7,
        None,
    )
    assert rows[a.key].delivered_at == "2026-10-20T13:00:02.000Z"
    assert (rows[b.key].status, rows[b.key].last_status_code) == ("rejected", 422)
    assert rows[b.key].last_error == "HTTP 422: unknown alert"
    assert rows[b.key].delivered_at is None
    assert [r.key for r in outbox.pending()] == [c.key]
    with pytest.raises(KeyError):
        outbox.mark_delivered("mbalert_unknown", 200, 1)

    assert outbox.requeue_rejected(["mbalert_unknown", a.key, b.key]) == 1  # b only
    assert [r.key for r in outbox.pending()] == sorted([b.key, c.key])


def test_a_reader_holding_a_snapshot_does_not_block_a_delivery_record(outbox):
    [notification] = queue(outbox, spend("60"))
    reader = sqlite3.connect(outbox.path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT status FROM notifications").fetchone() == ("pending",)
        quick = Outbox(outbox.path, busy_timeout_seconds=0.1)
        assert quick.mark_delivered(notification.key, 200, 1)  # WAL: no wait on the reader
        assert reader.execute("SELECT status FROM notifications").fetchone() == ("pending",)
    finally:
        reader.close()
    assert outbox.rows()[0].status == "delivered"


def test_thresholds_crossed_is_stored_as_json_text(outbox):
    [notification] = queue(outbox, spend("130.00"))
    with sqlite3.connect(outbox.path) as con:
        stored, body = con.execute("SELECT thresholds_crossed, body FROM notifications").fetchone()
    assert json.loads(stored) == ["50.00", "80.00", "100.00"]
    assert isinstance(body, bytes) and body == notification.body()
