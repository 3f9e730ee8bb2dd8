"""The envelope of `POST /v1/events` (SPEC 2.2, 9; orchestration/ingest/envelope.py): a body
split into events (a JSON array, NDJSON or one object), each accepted as the landing line it
is written as (its text as sent, folded onto one line) or refused with its reason."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestration.ingest.envelope import (
    MAX_ID_CHARS,
    MAX_TIMESTAMP_CHARS,
    Accepted,
    BatchError,
    Refused,
    check_event,
    split_batch,
)

MAX = 64 << 10
EVENT = {
    "event_id": "e1",
    "customer_id": "acme",
    "event_name": "email.sent",
    "timestamp": "2026-10-01T12:00:00Z",
    "properties": {"n": 1},
}
CLOUD_EVENT = {
    "specversion": "1.0",
    "id": "c1",
    "source": "/mailer",
    "type": "email.sent",
    "subject": "acme",
    "time": "2026-10-01T12:00:00Z",
    "data": {"n": 1},
}


def _text(event: dict[str, Any], **changes: Any) -> bytes:
    """The event as compact JSON text; a change to None drops the field."""
    event = {**event, **changes}
    return json.dumps({k: v for k, v in event.items() if v is not None}).encode()


def _accepted(text: bytes, customers: frozenset[str] | None = None) -> Accepted:
    result = check_event(0, text, MAX, customers)
    assert isinstance(result, Accepted), result
    return result


def _refused(text: bytes | None, max_event_bytes: int = MAX, customers=None) -> Refused:
    result = check_event(3, text, max_event_bytes, customers)
    assert isinstance(result, Refused), result
    assert result.index == 3
    return result


def _event(i: int) -> bytes:
    return _text(EVENT, event_id=f"e{i}")


# --- split_batch ---------------------------------------------------------------------------


def test_a_json_array_is_split_into_its_elements_texts():
    body = b"[" + b",".join(_event(i) for i in range(3)) + b"]"
    assert split_batch(body) == [_event(0), _event(1), _event(2)]


def test_an_empty_array_or_an_empty_body_holds_no_event():
    assert split_batch(b" [ ] ") == []
    assert split_batch(b"") == []
    assert split_batch(b"\n \r\n\n") == []


def test_ndjson_skips_blank_lines_and_drops_carriage_returns():
    body = _event(0) + b"\r\n\r\n   \n" + _event(1) + b"\r\n" + _event(2)
    assert split_batch(body) == [_event(0), _event(1), _event(2)]


def test_a_single_pretty_printed_object_is_one_event_folded_onto_one_line():
    body = json.dumps(EVENT, indent=2).encode() + b"\n"
    (text,) = split_batch(body)
    assert text == body.strip()
    line = _accepted(text).line
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == EVENT


def test_a_pretty_printed_array_gives_one_line_per_event():
    events = [{**EVENT, "event_id": f"e{i}"} for i in range(3)]
    texts = split_batch(json.dumps(events, indent=4).encode())
    assert len(texts) == 3
    lines = [_accepted(t).line for t in texts]
    assert all(line.count(b"\n") == 1 and line.endswith(b"\n") for line in lines)
    assert [json.loads(line) for line in lines] == events


def test_a_utf8_bom_before_the_body_is_dropped():
    bom = b"\xef\xbb\xbf"
    assert split_batch(bom + b"[" + _event(0) + b"]") == [_event(0)]
    assert split_batch(bom + _event(0) + b"\n" + _event(1)) == [_event(0), _event(1)]
    assert split_batch(bom + _event(0)) == [_event(0)]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" + _text(EVENT) + b",", "not a valid JSON array"),
        (b"[" + _text(EVENT) + b",]", "not a valid JSON array"),
        (b"[" + _text(EVENT) + b" " + _text(EVENT) + b"]", "',' expected"),
        (b'[{"event_id": }]', "not a valid JSON array"),
        (b"[" + _text(EVENT) + b"] trailing", "text after its JSON array"),
        (b'[{"n": NaN}]', "NaN is not JSON"),
        (b'[{"s": "\xff"}]', "not UTF-8"),
        (b"[" * 100_000, "not a valid JSON array"),
    ],
)
def test_an_array_that_does_not_parse_refuses_the_whole_batch(body, says):
    with pytest.raises(BatchError, match=says):
        split_batch(body)


def test_a_line_that_is_not_utf8_is_malformed_and_only_that_line():
    bad = _text(EVENT, event_id="bad").replace(b"email.sent", b"email.\xff\xfe")
    texts = split_batch(_event(0) + b"\n" + bad + b"\n" + _event(2) + b"\n")
    assert len(texts) == 3
    results = [check_event(i, t, MAX, None) for i, t in enumerate(texts)]
    assert [type(r) for r in results] == [Accepted, Refused, Accepted]
    assert [r.event_id for r in results] == ["e0", None, "e2"]
    assert results[1].reason == "malformed"
    assert results[1].index == 1


def test_no_text_stands_for_a_line_that_is_not_utf8():
    refused = _refused(None)
    assert (refused.reason, refused.message) == ("malformed", "the event is not UTF-8 text")


# --- check_event: accepted -----------------------------------------------------------------


def test_an_accepted_event_is_its_text_as_sent_with_a_newline():
    text = _text(EVENT)
    accepted = _accepted(text)
    assert accepted == Accepted(0, "e1", "acme", text + b"\n")


def test_numbers_are_kept_byte_for_byte():
    text = (
        b'{"event_id": "n1", "customer_id": "acme", "event_name": "tokens", '
        b'"timestamp": "2026-10-01T12:00:00Z", "properties": {"a": 1.10, '
        b'"b": 12345678901234567890.123456789, "c": 1E+2, "d": -0.0, "e": 0.1e-7}}'
    )
    line = _accepted(text).line
    assert line == text + b"\n"
    # a float round trip would have lost them: the check is not vacuous
    assert json.dumps(json.loads(text)).encode() != text


@pytest.mark.parametrize("timestamp", [1790000000, 1790000000123, 1790000000.5, 0])
def test_a_numeric_timestamp_is_accepted(timestamp):
    assert _accepted(_text(EVENT, timestamp=timestamp)).event_id == "e1"


def test_source_and_properties_are_optional_and_null_counts_as_absent():
    assert _accepted(_text(EVENT, properties=None)).event_id == "e1"
    text = b'{"event_id":"e1","customer_id":"acme","event_name":"x","timestamp":1,'
    assert _accepted(text + b'"source":null,"properties":null}').customer_id == "acme"
    assert _accepted(text + b'"source":"billing"}').customer_id == "acme"


def test_fields_at_their_size_caps_are_accepted():
    text = _text(
        EVENT,
        event_id="i" * MAX_ID_CHARS,
        customer_id="c" * MAX_ID_CHARS,
        event_name="n" * MAX_ID_CHARS,
        source="s" * MAX_ID_CHARS,
        timestamp="t" * MAX_TIMESTAMP_CHARS,
    )
    assert _accepted(text).event_id == "i" * MAX_ID_CHARS
    exactly = _text(EVENT)
    assert check_event(0, exactly, len(exactly), None).line == exactly + b"\n"


def test_a_cloud_event_is_accepted_under_its_own_names():
    text = _text(CLOUD_EVENT)
    assert _accepted(text) == Accepted(0, "c1", "acme", text + b"\n")


def test_customers_a_key_may_send_for():
    text = _text(EVENT)
    assert _accepted(text, frozenset({"acme", "globex"})).customer_id == "acme"
    assert _accepted(_text(CLOUD_EVENT), frozenset({"acme"})).event_id == "c1"


# --- check_event: refused ------------------------------------------------------------------


@pytest.mark.parametrize("field", ["event_id", "customer_id", "event_name", "timestamp"])
@pytest.mark.parametrize("value", [None, ""])
def test_a_missing_or_empty_required_field_is_refused_by_name(field, value):
    text = _text(EVENT, **{field: value})
    if value == "":
        assert f'"{field}": ""'.encode() in text
    refused = _refused(text)
    assert (refused.reason, refused.message) == ("missing_field", f"{field} is required")
    # an empty event_id is a string: the answer echoes it
    assert refused.event_id == (value if field == "event_id" else "e1")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("event_id", 7, "event_id must be a string"),
        ("customer_id", ["acme"], "customer_id must be a string"),
        ("event_name", {"n": 1}, "event_name must be a string"),
        ("event_name", True, "event_name must be a string"),
        ("source", 3, "source must be a string"),
        ("properties", [1, 2], "properties must be an object"),
        ("properties", "n=1", "properties must be an object"),
        ("timestamp", True, "timestamp must be an RFC 3339 string or epoch"),
        ("timestamp", False, "timestamp must be an RFC 3339 string or epoch"),
        ("timestamp", [2026], "timestamp must be an RFC 3339 string or epoch"),
        ("timestamp", {"s": 1}, "timestamp must be an RFC 3339 string or epoch"),
    ],
)
def test_a_field_of_the_wrong_type_is_refused_by_name(field, value, message):
    refused = _refused(_text(EVENT, **{field: value}))
    assert refused.reason == "bad_type"
    assert refused.message.startswith(message)
    assert refused.event_id == (None if field == "event_id" else "e1")


@pytest.mark.parametrize("field", ["event_id", "customer_id", "event_name", "source"])
def test_a_text_field_over_its_cap_is_too_large(field):
    refused = _refused(_text(EVENT, **{field: "x" * (MAX_ID_CHARS + 1)}))
    assert refused.reason == "too_large"
    assert refused.message == f"{field} is over {MAX_ID_CHARS} characters"


def test_a_timestamp_over_its_cap_is_too_large():
    refused = _refused(_text(EVENT, timestamp="2" * (MAX_TIMESTAMP_CHARS + 1)))
    assert refused.reason == "too_large"
    assert refused.message == f"timestamp is over {MAX_TIMESTAMP_CHARS} characters"
    assert refused.event_id == "e1"


def test_an_event_over_max_event_bytes_is_too_large_before_it_is_parsed():
    text = _text(EVENT, properties={"pad": "p" * 300})
    refused = _refused(text, max_event_bytes=len(text) - 1)
    assert refused == Refused(3, "too_large", f"the event is over {len(text) - 1} bytes")
    refused = _refused(b"{" * 1000, max_event_bytes=999)  # not even JSON: size first
    assert refused.reason == "too_large"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"event_id": "e1", ', "the event is not valid JSON"),
        (b'{"event_id": "e1"} {"event_id": "e2"}', "the event is not valid JSON"),
        (b'{"event_id": "e1", "n": NaN}', "the event is not valid JSON"),
        (b'{"event_id": "e1", "n": -Infinity}', "the event is not valid JSON"),
        (b"[" * 50_000 + b"]" * 50_000, "the event is not valid JSON"),
        (b"[1, 2]", "the event is not a JSON object"),
        (b'"e1"', "the event is not a JSON object"),
        (b"null", "the event is not a JSON object"),
    ],
)
def test_malformed_events(text, message):
    refused = _refused(text, max_event_bytes=1 << 20)
    assert (refused.reason, refused.message, refused.event_id) == ("malformed", message, None)


def test_nan_in_properties_is_refused_while_the_rest_of_an_ndjson_batch_goes_through():
    nan = _text(EVENT, event_id="nan").replace(b'{"n": 1}', b'{"n": NaN}')
    assert b"NaN" in nan
    texts = split_batch(_event(0) + b"\n" + nan)
    results = [check_event(i, t, MAX, None) for i, t in enumerate(texts)]
    assert isinstance(results[0], Accepted)
    assert (results[1].reason, results[1].index) == ("malformed", 1)


def test_a_customer_the_key_may_not_send_for_is_refused():
    refused = _refused(_text(EVENT, customer_id="globex"), customers=frozenset({"acme"}))
    assert refused.reason == "customer_not_allowed"
    assert refused.message == "this key may not send events for customer 'globex'"
    assert refused.event_id == "e1"
    # the envelope comes first: a broken event for another customer is refused for that
    broken = _refused(_text(EVENT, customer_id="globex", event_name=5), customers=frozenset())
    assert broken.reason == "bad_type"


@pytest.mark.parametrize(
    ("dropped", "reason", "message"),
    [
        ("id", "missing_field", "id is required"),
        ("subject", "missing_field", "subject is required"),
        ("type", "missing_field", "type is required"),
        ("time", "missing_field", "time is required"),
    ],
)
def test_a_cloud_event_is_checked_under_its_names(dropped, reason, message):
    event = {k: v for k, v in CLOUD_EVENT.items() if k != dropped}
    refused = _refused(json.dumps(event).encode())
    # the message names the CloudEvents attribute the producer must send
    assert (refused.reason, refused.message) == (reason, message)
    assert refused.event_id == (None if dropped == "id" else "c1")


def test_a_cloud_event_does_not_take_spec_names_for_its_fields():
    # with specversion, `customer_id` is not read: `subject` is the customer
    event = {**CLOUD_EVENT, "customer_id": "acme"}
    del event["subject"]
    assert _refused(json.dumps(event).encode()).message == "subject is required"
    refused = _refused(_text(CLOUD_EVENT, data=[1]))
    assert (refused.reason, refused.message) == ("bad_type", "data must be an object")
    refused = _refused(_text(CLOUD_EVENT, time=False))
    assert refused.reason == "bad_type"
    refused = _refused(_text(CLOUD_EVENT, subject="globex"), customers=frozenset({"acme"}))
    assert (refused.reason, refused.event_id) == ("customer_not_allowed", "c1")


def test_the_refusal_answer_lists_its_fields_in_order():
    answer = Refused(2, "bad_type", "source must be a string", "e9").answer()
    assert list(answer.items()) == [
        ("index", 2),
        ("status", "refused"),
        ("reason", "bad_type"),
        ("event_id", "e9"),
        ("message", "source must be a string"),
    ]
    assert "event_id" not in Refused(0, "malformed", "the event is not valid JSON").answer()


@pytest.mark.parametrize(
    "text",
    [
        _text(EVENT).replace(b"email.sent", b"email.\xed\xa0\x80"),  # a UTF-8 encoded surrogate
        _text(EVENT).decode().encode("utf-16-le"),
        b"\xef\xbb\xbf" + _text(EVENT),  # a BOM inside the batch, before one NDJSON line
    ],
)
def test_a_line_the_ingest_cannot_decode_as_utf8_is_not_accepted(text):
    result = check_event(0, text, MAX, None)
    assert isinstance(result, Refused) and result.reason == "malformed"


@pytest.mark.parametrize(
    "event",
    [
        {**EVENT, "specversion": None},
        {**CLOUD_EVENT, "specversion": None},
    ],
)
def test_a_null_specversion_is_read_as_the_ingest_reads_it(event):
    result = check_event(0, json.dumps(event).encode(), MAX, None)
    # the ingest takes the first for a SPEC 2.2 event, the second for one missing event_id
    assert isinstance(result, Accepted) == ("event_id" in event)


# --- property: any valid events survive both layouts ---------------------------------------


def _dump(value: Any, indent: int | None = None, depth: int = 0) -> str:
    """JSON text with Decimals written as they are (json.dumps cannot)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict | list):
        if isinstance(value, dict):
            keys = [json.dumps(k, ensure_ascii=False) + ": " for k in value]
            values, (open_, close) = list(value.values()), "{}"
        else:
            keys, values, (open_, close) = [""] * len(value), value, "[]"
        items = [k + _dump(v, indent, depth + 1) for k, v in zip(keys, values, strict=True)]
        if indent is None or not items:
            return open_ + ", ".join(items) + close
        pad, inner = " " * indent * depth, " " * indent * (depth + 1)
        return open_ + "\n" + ",\n".join(inner + i for i in items) + "\n" + pad + close
    return json.dumps(value, ensure_ascii=False)


# line breaks (to str.splitlines) that JSON keeps raw inside strings: folding must not touch them
_TEXT = st.text(
    alphabet=st.one_of(st.characters(codec="utf-8"), st.sampled_from("\u2028\u2029\x85\x0b\x0c")),
    max_size=12,
)
_ID = _TEXT.filter(bool)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    _TEXT,
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=8,
)


@st.composite
def _events(draw) -> dict[str, Any]:
    event = {
        "event_id": draw(_ID),
        "customer_id": draw(_ID),
        "event_name": draw(_ID),
        "timestamp": draw(
            st.one_of(
                st.integers(min_value=0, max_value=10**13),
                st.decimals(min_value=0, max_value=10**10, allow_nan=False, places=3),
                _ID,
            )
        ),
    }
    if draw(st.booleans()):
        event["properties"] = draw(st.dictionaries(_TEXT, _VALUES, max_size=4))
    if draw(st.booleans()):
        event["source"] = draw(_ID)
    return event


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(events=st.lists(_events(), min_size=1, max_size=5), pretty=st.booleans())
def test_any_valid_events_come_back_the_same_from_an_array_and_from_ndjson(events, pretty):
    compact = [_dump(e) for e in events]
    array = _dump(events, indent=2 if pretty else None).encode()
    ndjson = "\n".join(compact).encode() + b"\n"
    for body in (array, ndjson):
        texts = split_batch(body)
        assert len(texts) == len(events)
        results = [check_event(i, t, 10_000_000, None) for i, t in enumerate(texts)]
        assert all(isinstance(r, Accepted) for r in results), results
        lines = [r.line for r in results]
        assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
        assert [json.loads(line, parse_float=Decimal) for line in lines] == events
        assert [r.event_id for r in results] == [e["event_id"] for e in events]
        assert [r.customer_id for r in results] == [e["customer_id"] for e in events]
    # a compact event is written exactly as it was sent, numbers' digits included
    lines = [check_event(i, t, 10_000_000, None).line for i, t in enumerate(split_batch(ndjson))]
    assert lines == [c.encode() + b"\n" for c in compact]
