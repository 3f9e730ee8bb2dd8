"""The envelope checks of `POST /v1/events` (SPEC 9): a batch's body split into events, each
accepted as the landing line it will be written as, or refused with a reason. Pure.

Only the envelope is checked here (SPEC 2.2's fields present, typed and within their sizes);
every fate of SPEC 2.3 (a timestamp that does not parse, an unknown customer, a duplicate)
stays the pipeline's, which sees the accepted events as the lines of a landing file.

An accepted event is written as the text it was sent as, not re-serialized: a number like
`1.10` or `12345678901234567890.1` must reach the ingest as sent, and a JSON float would not
keep it. Whitespace between tokens (a pretty-printed array) is folded onto one line; a JSON
string cannot hold a raw line break, so folding never touches a value.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

MAX_ID_CHARS = 200  # SPEC 2.2: event_id is 1-200 characters; the others share the cap
MAX_TIMESTAMP_CHARS = 64

# SPEC 2.2's fields by their CloudEvents 1.0 names, for an event that carries `specversion`
CLOUDEVENT_FIELDS = {
    "event_id": "id",
    "customer_id": "subject",
    "event_name": "type",
    "timestamp": "time",
    "properties": "data",
    "source": "source",
}
_REQUIRED_TEXT = ("event_id", "customer_id", "event_name")


class BatchError(ValueError):
    """The body as a whole cannot be split into events (an array that does not parse)."""


@dataclass(frozen=True)
class Accepted:
    index: int
    event_id: str
    customer_id: str
    line: bytes  # the landing line, newline included


@dataclass(frozen=True)
class Refused:
    index: int
    reason: str  # malformed | missing_field | bad_type | too_large | customer_not_allowed
    message: str
    event_id: str | None = None

    def answer(self) -> dict[str, Any]:
        answer = {"index": self.index, "status": "refused", "reason": self.reason}
        if self.event_id is not None:
            answer["event_id"] = self.event_id
        answer["message"] = self.message
        return answer


def split_batch(body: bytes) -> list[bytes | None]:
    """The events' texts, in order: a JSON array's elements, else NDJSON's non-blank lines (a
    single JSON object, however laid out, is one event). None stands for a line that is not
    UTF-8, refused as malformed by `check_event`. BatchError if an array does not parse."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    head = body.lstrip()[:1]
    if head == b"[":
        return list(_array_elements(body))
    if head == b"{" and _one_object(body):
        return [body.strip()]
    return [_utf8_or_none(line.rstrip(b"\r")) for line in body.split(b"\n") if line.strip()]


def check_event(
    index: int, text: bytes | None, max_event_bytes: int, customers: frozenset[str] | None
) -> Accepted | Refused:
    """One event's envelope; `customers`, when set, are the only ones the key may send for."""
    if text is None:
        return Refused(index, "malformed", "the event is not UTF-8 text")
    if len(text) > max_event_bytes:
        return Refused(index, "too_large", f"the event is over {max_event_bytes} bytes")
    try:
        # strict UTF-8 first: json.loads(bytes) would guess UTF-16 or take a lone surrogate,
        # which the ingest then calls malformed
        event = _loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        return Refused(index, "malformed", "the event is not UTF-8 text")
    except (ValueError, RecursionError):
        return Refused(index, "malformed", "the event is not valid JSON")
    if not isinstance(event, dict):
        return Refused(index, "malformed", "the event is not a JSON object")
    fields, names = _fields(event)
    problem = _envelope_problem(fields, names)
    event_id = fields.get("event_id") if isinstance(fields.get("event_id"), str) else None
    if problem is not None:
        return Refused(index, *problem, event_id=event_id)
    customer_id = fields["customer_id"]
    if customers is not None and customer_id not in customers:
        message = f"this key may not send events for customer {customer_id!r}"
        return Refused(index, "customer_not_allowed", message, event_id)
    line = b" ".join(text.splitlines()) + b"\n"
    return Accepted(index, event_id, customer_id, line)


def _fields(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """SPEC 2.2's fields of the event, read under their CloudEvents names when it is one (a
    non-null `specversion`, as the ingest decides), and the names to use in messages."""
    if event.get("specversion") is None:
        return event, {}
    fields = {ours: event.get(theirs) for ours, theirs in CLOUDEVENT_FIELDS.items()}
    return fields, CLOUDEVENT_FIELDS


def _envelope_problem(fields: dict[str, Any], names: dict[str, str]) -> tuple[str, str] | None:
    for field in _REQUIRED_TEXT:
        problem = _text_problem(names.get(field, field), fields.get(field), required=True)
        if problem is not None:
            return problem
    timestamp, name = fields.get("timestamp"), names.get("timestamp", "timestamp")
    if timestamp is None or timestamp == "":
        return "missing_field", f"{name} is required"
    if isinstance(timestamp, str):
        if len(timestamp) > MAX_TIMESTAMP_CHARS:
            return "too_large", f"{name} is over {MAX_TIMESTAMP_CHARS} characters"
    elif isinstance(timestamp, bool) or not isinstance(timestamp, int | Decimal):
        return "bad_type", f"{name} must be an RFC 3339 string or epoch seconds/milliseconds"
    properties = fields.get("properties")
    if properties is not None and not isinstance(properties, dict):
        return "bad_type", f"{names.get('properties', 'properties')} must be an object"
    return _text_problem(names.get("source", "source"), fields.get("source"), required=False)


def _utf8_or_none(line: bytes) -> bytes | None:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return line


def _text_problem(name: str, value: Any, required: bool) -> tuple[str, str] | None:
    if value is None or value == "":
        return ("missing_field", f"{name} is required") if required else None
    if not isinstance(value, str):
        return "bad_type", f"{name} must be a string"
    if len(value) > MAX_ID_CHARS:
        return "too_large", f"{name} is over {MAX_ID_CHARS} characters"
    return None


def _loads(text: bytes | str) -> Any:
    # numbers as Decimal (no float near a quantity); NaN and Infinity are not JSON
    return json.loads(text, parse_float=Decimal, parse_constant=_not_json)


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _one_object(body: bytes) -> bool:
    try:
        return isinstance(_loads(body), dict)
    except (ValueError, RecursionError):
        return False  # NDJSON (extra data after the first object), or a broken line


def _array_elements(body: bytes) -> Iterator[bytes]:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchError(f"the batch is not UTF-8 (byte {exc.start})") from None
    decoder = json.JSONDecoder(parse_float=Decimal, parse_constant=_not_json)
    at = _skip(text, text.index("[") + 1)
    if text.startswith("]", at):
        _end(text, at + 1)
        return
    while True:
        try:
            _, end = decoder.raw_decode(text, at)
        except (ValueError, RecursionError) as exc:
            raise BatchError(f"the batch is not a valid JSON array: {exc}") from None
        yield text[at:end].encode("utf-8")
        at = _skip(text, end)
        if text.startswith("]", at):
            _end(text, at + 1)
            return
        if not text.startswith(",", at):
            raise BatchError(f"the batch is not a valid JSON array: ',' expected at char {at}")
        at = _skip(text, at + 1)


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in " \t\r\n":
        at += 1
    return at


def _end(text: str, at: int) -> None:
    if _skip(text, at) != len(text):
        raise BatchError("the batch has text after its JSON array")
