"""The catalog-independent checks of SPEC 2.3 on JSON lines, one line per case.

All cases go into one file ingested once (module fixture); each test looks its line up.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from ingest_helpers import NOW, Landing, event

OK = None
E = event()  # a valid event to vary


def line(**changes) -> bytes:
    obj = {**E, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not _DROP}).encode()


_DROP = object()
FUTURE_OK = (NOW + timedelta(hours=23)).isoformat()
FUTURE_BAD = (NOW + timedelta(hours=25)).isoformat()

CASES: dict[str, tuple[bytes, str | None]] = {
    # malformed
    "not json": (b"this is not json", "malformed"),
    "truncated": (b'{"event_id": "e1", "customer_id": "ac', "malformed"),
    "array": (b"[1, 2]", "malformed"),
    "string": (b'"just a string"', "malformed"),
    "number": (b"42", "malformed"),
    "invalid utf-8": (b'{"event_id": "\xff\xfe", "customer_id": "acme"}', "malformed"),
    "trailing garbage": (line() + b" x", "malformed"),
    "properties array": (line(properties=[1, 2]), "malformed"),
    "properties string": (line(properties="x"), "malformed"),
    "trailing comma": (line()[:-1] + b",}", "malformed"),
    "trailing comma in properties": (line()[:-1] + b', "properties": {"n": 1 , }}', "malformed"),
    "trailing comma in an array value": (
        line(properties={"n": 1})[:-2] + b', "l": [1,\t]}}',
        "malformed",
    ),
    "a string holding ,}": (line(properties={"note": "a,}", "q": 'say ",]'}), OK),
    "repeated key needing cleaning": (
        line()[:-1] + b', "properties": {"a": 1, "a": 2, "b": null}}',
        "malformed",
    ),
    # missing_field
    "no event_id": (line(event_id=_DROP), "missing_field"),
    "null event_id": (line(event_id=None), "missing_field"),
    "empty event_id": (line(event_id=""), "missing_field"),
    "blank event_id": (line(event_id="   "), "missing_field"),
    "event_id 201 chars": (line(event_id="x" * 201), "missing_field"),
    "event_id object": (line(event_id={"a": 1}), "missing_field"),
    "event_id array": (line(event_id=[1]), "missing_field"),
    "no customer_id": (line(customer_id=_DROP), "missing_field"),
    "no event_name": (line(event_name=_DROP), "missing_field"),
    "empty event_name": (line(event_name=""), "missing_field"),
    "no timestamp": (line(timestamp=_DROP), "missing_field"),
    "null timestamp": (line(timestamp=None), "missing_field"),
    "empty timestamp": (line(timestamp=""), "missing_field"),
    "missing before bad timestamp": (line(event_id=_DROP, timestamp="nope"), "missing_field"),
    # bad_timestamp
    "day 32": (line(timestamp="2026-10-32T10:00:00Z"), "bad_timestamp"),
    "february 30": (line(timestamp="2026-02-30T10:00:00Z"), "bad_timestamp"),
    "no offset": (line(timestamp="2026-10-02T10:00:00"), "bad_timestamp"),
    "date only": (line(timestamp="2026-10-02"), "bad_timestamp"),
    "slashes": (line(timestamp="2026/10/02T10:00:00Z"), "bad_timestamp"),
    "offset hour 24": (line(timestamp="2026-10-02T10:00:00+24:00"), "bad_timestamp"),
    "offset minute 60": (line(timestamp="2026-10-02T10:00:00+02:60"), "bad_timestamp"),
    "fraction point without digits": (line(timestamp="2026-10-02T10:00:00.Z"), "bad_timestamp"),
    "offset 23:59": (line(timestamp="2026-10-02T10:00:00-23:59"), OK),
    "fraction with digits": (line(timestamp="2026-10-02T10:00:00.5+02:00"), OK),
    "hour 24": (line(timestamp="2026-10-02T24:00:00Z"), "bad_timestamp"),
    "one-digit hour": (line(timestamp="2026-10-02T9:00:00Z"), "bad_timestamp"),
    "offset without colon": (line(timestamp="2026-10-02T10:00:00+0200"), "bad_timestamp"),
    "digits in a string": (line(timestamp="1791763200"), "bad_timestamp"),
    "boolean": (line(timestamp=True), "bad_timestamp"),
    "object": (line(timestamp={"s": 1}), "bad_timestamp"),
    "NaN": (line()[: -len(b'"2026-10-02T10:00:00Z"}')] + b"NaN}", "bad_timestamp"),
    "1e30": (line()[: -len(b'"2026-10-02T10:00:00Z"}')] + b"1e30}", "bad_timestamp"),
    "1e400": (line()[: -len(b'"2026-10-02T10:00:00Z"}')] + b"1e400}", "bad_timestamp"),
    "bad timestamp before bad property": (
        line(timestamp="x", properties={"a": {"b": 1}}),
        "bad_timestamp",
    ),
    # too_far_in_future (more than 24 h after now)
    "23 h ahead": (line(timestamp=FUTURE_OK), OK),
    "25 h ahead": (line(timestamp=FUTURE_BAD), "too_far_in_future"),
    "25 h ahead in ms": (
        line(timestamp=int((NOW + timedelta(hours=25)).timestamp() * 1000)),
        "too_far_in_future",
    ),
    "future before bad property": (
        line(timestamp=FUTURE_BAD, properties={"a": [1]}),
        "too_far_in_future",
    ),
    # bad_property
    "nested object": (line(properties={"a": {"b": 1}}), "bad_property"),
    "nested array": (line(properties={"a": [1]}), "bad_property"),
    "NaN value": (line()[:-1] + b', "properties": {"a": NaN}}', "bad_property"),
    "Infinity value": (line()[:-1] + b', "properties": {"a": -Infinity}}', "bad_property"),
    "1e400 value": (line()[:-1] + b', "properties": {"a": 1e400}}', "bad_property"),
    "400-digit value": (
        line()[:-1] + b', "properties": {"a": 1' + b"0" * 400 + b"}}",
        "bad_property",
    ),
    # valid
    "plain": (line(), OK),
    "event_id 200 chars": (line(event_id="x" * 200), OK),
    "numeric ids": (line(event_id=12345, customer_id=7), OK),
    "offset +02:00": (line(timestamp="2026-10-02T12:00:00+02:00"), OK),
    "lower-case t and z": (line(timestamp="2026-10-02t10:00:00.5z"), OK),
    "nanoseconds": (line(timestamp="2026-10-02T10:00:00.123456789Z"), OK),
    "epoch seconds": (line(timestamp=1791763200), OK),
    "epoch fractional seconds": (line(timestamp=1791763200.25), OK),
    "epoch milliseconds": (line(timestamp=1791880200000), OK),
    "just under 1e11 is seconds": (line(timestamp=99999999999), "too_far_in_future"),
    "1e11 is milliseconds": (line(timestamp=100000000000), OK),
    "null properties": (line(properties=None), OK),
    "null values dropped": (line(properties={"a": None, "b": 1, "c": None}), OK),
    "typed values": (line(properties={"n": 2.5, "i": 3, "s": "x", "b": True}), OK),
    "repeated key kept as sent": (line()[:-1] + b', "properties": {"a": 1, "a": 2}}', OK),
    "large finite value": (line()[:-1] + b', "properties": {"a": 1e300}}', OK),
    "string that looks nested": (line(properties={"a": "{not: [nested]}"}), OK),
    "source number": (line(source=5), OK),
    "cloudevent": (
        json.dumps(
            {
                "specversion": "1.0",
                "id": "c1",
                "source": "/gateway",
                "type": "api.request",
                "subject": "acme",
                "time": "2026-10-02T10:00:00Z",
                "data": {"x": 1, "y": None},
                "event_id": "ignored",
            }
        ).encode(),
        OK,
    ),
    "cloudevent without subject": (
        json.dumps(
            {
                "specversion": "1.0",
                "id": "c2",
                "type": "api.request",
                "time": "2026-10-02T10:00:00Z",
            }
        ).encode(),
        "missing_field",
    ),
}
NAMES = list(CASES)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    land = Landing(tmp_path_factory.mktemp("checks"))
    # a blank line between cases: blank lines are skipped, numbering follows the file
    land.write("cases.jsonl", b"\n\n".join(CASES[name][0] for name in NAMES) + b"\n")
    result = land.ingest()
    rows = {(e["line_no"] + 1) // 2: e for e in land.events()}
    yield land, result, {name: rows[i + 1] for i, name in enumerate(NAMES)}
    land.con.close()


@pytest.mark.parametrize("name", NAMES)
def test_reason(ingested, name):
    _, _, rows = ingested
    assert rows[name]["parse_reason"] == CASES[name][1]


def test_blank_lines_are_not_read_but_keep_the_numbering(ingested):
    land, result, rows = ingested
    assert result.lines_read == len(CASES) == len(land.events())
    assert rows[NAMES[1]]["line_no"] == 3


def field(rows, name, key):
    return rows[name][key]


def test_timestamps_are_instants(ingested):
    _, _, rows = ingested
    utc = lambda *a: datetime(*a, tzinfo=UTC)  # noqa: E731
    assert field(rows, "offset +02:00", "event_ts") == utc(2026, 10, 2, 10)
    assert field(rows, "lower-case t and z", "event_ts") == utc(2026, 10, 2, 10, 0, 0, 500000)
    assert field(rows, "nanoseconds", "event_ts") == utc(2026, 10, 2, 10, 0, 0, 123456)
    assert field(rows, "epoch seconds", "event_ts") == utc(2026, 10, 12)
    assert field(rows, "epoch fractional seconds", "event_ts") == utc(2026, 10, 12, 0, 0, 0, 250000)
    assert field(rows, "epoch milliseconds", "event_ts") == utc(2026, 10, 13, 8, 30)
    assert field(rows, "just under 1e11 is seconds", "event_ts").year == 5138
    assert field(rows, "1e11 is milliseconds", "event_ts") == utc(1973, 3, 3, 9, 46, 40)
    assert field(rows, "day 32", "event_ts") is None


def test_properties_are_an_object_without_nulls(ingested):
    _, _, rows = ingested
    assert json.loads(field(rows, "null values dropped", "properties")) == {"b": 1}
    assert json.loads(field(rows, "null properties", "properties")) == {}
    assert field(rows, "plain", "properties") == "{}"
    typed = json.loads(field(rows, "typed values", "properties"))
    assert typed == {"n": 2.5, "i": 3, "s": "x", "b": True}
    assert [type(v) for v in typed.values()] == [float, int, str, bool]


def test_ids_and_source_are_text(ingested):
    _, _, rows = ingested
    assert (field(rows, "numeric ids", "event_id"), field(rows, "numeric ids", "customer_id")) == (
        "12345",
        "7",
    )
    assert field(rows, "source number", "source") == "5"
    assert field(rows, "event_id 200 chars", "event_id") == "x" * 200


def test_cloudevents_map_to_the_event_fields(ingested):
    _, _, rows = ingested
    ce = rows["cloudevent"]
    assert (ce["event_id"], ce["customer_id"], ce["event_name"], ce["source"]) == (
        "c1",
        "acme",
        "api.request",
        "/gateway",
    )
    assert ce["event_ts"] == datetime(2026, 10, 2, 10, tzinfo=UTC)
    assert json.loads(ce["properties"]) == {"x": 1}


def test_rejected_lines_keep_their_text_and_valid_ones_do_not(ingested):
    _, _, rows = ingested
    assert rows["not json"]["raw_line"] == "this is not json"
    assert rows["day 32"]["raw_line"] == CASES["day 32"][0].decode()
    assert "\\xFF\\xFE" in rows["invalid utf-8"]["raw_line"]
    assert rows["plain"]["raw_line"] is None


def test_only_parsed_rows_take_a_key_rank(ingested):
    _, _, rows = ingested
    assert rows["not json"]["key_rank"] is None and rows["day 32"]["key_rank"] is None
    assert rows["plain"]["key_rank"] >= 1


def test_raw_line_is_capped(landing):
    landing.write("long.jsonl", "x" * 10000 + "\n")
    landing.ingest()
    (row,) = landing.events()
    assert row["parse_reason"] == "malformed" and len(row["raw_line"]) == 4096
