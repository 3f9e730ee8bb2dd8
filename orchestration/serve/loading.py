"""The published snapshot read into what the API answers, a small step at a time.

`json.loads` of a 10,000-customer snapshot (18 MB) is one C call that holds the GIL for
about 250 ms: run in a background thread it would still stop every request for that long,
and decoding the whole file to text first holds it for another ~10 ms. Here the file is read
in 64 KiB chunks and the top-level object and its "customers" object are walked one member
at a time; only a member's value (one customer: a few KiB) goes through the C decoder in one
call, and `pause` is called between customers so the loader can give the GIL away.

Each document a request returns is serialised here, once per snapshot, so answering is a
dictionary look-up and a write of bytes.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from json.decoder import scanstring
from typing import Any, BinaryIO, TypeVar

from orchestration.billing.entitlements.publish import FORMAT

CHUNK_BYTES = 1 << 16
_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r"[ \t\n\r]*")
T = TypeVar("T")


def dumps(document: Any) -> bytes:
    """As `write_atomically` writes (sorted keys, no spaces): what the publisher stored is
    served byte for byte."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One published snapshot, never changed while it is served: a request that reads the
    store's reference once sees one snapshot throughout (a replaced snapshot is emptied once
    nothing holds it, snapshot.py).

    Per customer, two plain dicts rather than an object: a dict of str keys and bytes values
    is not tracked by the garbage collector, so 10,000 customers add no work to its full
    collections (with an object per customer, each full collection took ~20 ms longer, the
    GIL held)."""

    as_of: str | None
    published_at: str | None
    features: frozenset[str]
    entitlements: dict[str, dict[str, bytes]]  # customer -> feature code -> its document
    usage: dict[str, bytes]  # customer -> its month so far
    health: bytes

    def entitlement_list(self, customer_id: str, documents: dict[str, bytes]) -> bytes:
        """`{"customer_id", "as_of", "entitlements": [each document, in feature-code order]}`"""
        head = json.dumps({"customer_id": customer_id, "as_of": self.as_of}, separators=(",", ":"))
        listed = b",".join(documents.values())  # kept in code order
        # the head without its closing brace, then the documents as they are
        return b"".join((head[:-1].encode(), b',"entitlements":[', listed, b"]}"))


def load_snapshot(handle: BinaryIO, pause: Callable[[], None] = lambda: None) -> Snapshot:
    """The snapshot in `handle` (format 1, publish.py); ValueError if it is not one."""
    source = _Source(handle)
    fields: dict[str, Any] = {}
    entitlements: dict[str, dict[str, bytes]] = {}
    usage: dict[str, bytes] = {}

    def customer(customer_id: str) -> None:
        document = source.take(_DECODER.raw_decode)
        entitlements[customer_id], usage[customer_id] = _customer(customer_id, document)
        pause()

    def member(key: str) -> None:
        if key == "customers":
            entitlements.clear()  # a repeated key: the last one wins, as in json.loads
            usage.clear()
            source.walk(customer)
        else:
            fields[key] = source.take(_DECODER.raw_decode)

    source.walk(member)
    source.finish()
    return _snapshot(fields, entitlements, usage)


def _snapshot(fields: dict[str, Any], entitlements: dict, usage: dict) -> Snapshot:
    if fields.get("format") != FORMAT:
        raise ValueError(f"format {fields.get('format')!r}, not {FORMAT}")
    features = fields.get("features")
    if not isinstance(features, dict):
        raise ValueError('"features" is not an object')
    as_of, published_at = fields.get("as_of"), fields.get("published_at")
    health = {"status": "ok", "as_of": as_of, "published_at": published_at}
    health["customers"] = len(usage)
    health_body = json.dumps(health, separators=(",", ":")).encode()
    return Snapshot(as_of, published_at, frozenset(features), entitlements, usage, health_body)


def _customer(customer_id: str, document: Any) -> tuple[dict[str, bytes], bytes]:
    entitlements = document.get("entitlements") if isinstance(document, dict) else None
    if not isinstance(entitlements, dict) or "usage" not in document:
        raise ValueError(f"customer {customer_id!r}: no entitlements object or no usage")
    if not all(isinstance(feature, dict) for feature in entitlements.values()):
        raise ValueError(f"customer {customer_id!r}: an entitlement is not an object")
    ordered = {code: dumps(entitlements[code]) for code in sorted(entitlements)}
    return ordered, dumps(document["usage"])


class _Source:
    """The file's text, a chunk at a time: `take` parses what comes next, reading more of the
    file until the thing parsed is whole."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._text, self._at, self._ended = "", 0, False

    def take(self, parse: Callable[[str, int], tuple[T, int]]) -> T:
        while True:
            try:
                value, end = parse(self._text, self._at)
            except (ValueError, IndexError) as exc:  # cut off by the chunk's end, or invalid
                if self._ended:
                    raise ValueError(f"not JSON: {exc}") from exc
            else:
                # a value that ends where the text does may go on in the next chunk ("1" of "10")
                if end < len(self._text) or self._ended:
                    self._at = end
                    return value
            self._read()

    def walk(self, member: Callable[[str], None]) -> None:
        """The object that comes next: `member(key)` takes each member's value."""
        more = self.take(_opening)
        while more:
            member(self.take(_key))
            more = self.take(_after_member)

    def finish(self) -> None:
        while not self._ended:
            self._read()
        if _skip(self._text, self._at) != len(self._text):
            raise ValueError("text after the snapshot's object")

    def _read(self) -> None:
        chunk = self._handle.read(CHUNK_BYTES)
        self._ended = not chunk
        self._text = self._text[self._at :] + self._decoder.decode(chunk, final=self._ended)
        self._at = 0


# Each parser takes the text and a position and returns what it read and where it stopped;
# an IndexError or ValueError means "cut off or invalid" (_Source.take tells which).


def _skip(text: str, at: int) -> int:
    return _WHITESPACE.match(text, at).end()


def _expect(text: str, at: int, char: str) -> None:
    if text[at] != char:
        raise ValueError(f"{char!r} expected at {at}, found {text[at]!r}")


def _opening(text: str, at: int) -> tuple[bool, int]:
    """'{', and whether a member follows it."""
    at = _skip(text, at)
    _expect(text, at, "{")
    at = _skip(text, at + 1)
    if text[at] == "}":
        return False, at + 1
    return True, at


def _key(text: str, at: int) -> tuple[str, int]:
    _expect(text, at, '"')
    key, at = scanstring(text, at + 1)
    at = _skip(text, at)
    _expect(text, at, ":")
    return key, _skip(text, at + 1)


def _after_member(text: str, at: int) -> tuple[bool, int]:
    """',' and another member, or the object's '}'."""
    at = _skip(text, at)
    if text[at] == ",":
        return True, _skip(text, at + 1)
    _expect(text, at, "}")
    return False, at + 1
