"""Whatever a producer sends, the ingest stores one row per line and never fails.

An error inside the ingest's transaction would abort the whole run, so the SQL must be total.
A seeded generator mixes valid events with odd values in every field; every line is ingested
twice (two files) so that every key repeats and every row's payload is hashed too.
"""

from __future__ import annotations

import json
import random

from ingest_helpers import event

ODD_VALUES = [
    None,
    "",
    " ",
    "\t",
    "\u0000",
    "\\",
    '"',
    "\U0001f600",
    "é",
    "x" * 300,
    0,
    -1,
    1.5,
    1e308,
    -1e-308,
    10**30,
    2**64,
    True,
    False,
    [],
    {},
    [None],
    {"a": None},
    {"": 1},
    "NaN",
    "2026-10-02T10:00:00Z",
    "2026-10-02T10:00:00+14:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
    "2026-10-02T10:00:00.Z",
    1791763200,
    -1791763200,
    99999999999999,
    1e15,
    253402300800,
    -62135596801,
]
NOT_NEWLINE = [b for b in range(256) if b != 10]
RAW_VALUES = [b"NaN", b"-Infinity", b"1e400", b"-1e400", b"1" + b"0" * 400, b'"\\ud800"', b"1E2"]


def odd_event(rng: random.Random) -> bytes:
    obj = event(f"f{rng.randrange(10**6)}")
    for field in rng.sample(list(obj), rng.randint(0, 4)):
        obj[field] = rng.choice(ODD_VALUES)
    props = {f"k{i}": rng.choice(ODD_VALUES) for i in range(rng.randint(0, 4))}
    if rng.random() < 0.8:
        obj["properties"] = props
    line = json.dumps(obj, ensure_ascii=rng.random() < 0.5).encode()
    if rng.random() < 0.2:  # a raw token DuckDB reads but json.dumps cannot write
        line = line[:-1] + b', "properties": {"r": ' + rng.choice(RAW_VALUES) + b"}}"
    if rng.random() < 0.05:
        cut = rng.randrange(len(line))
        line = line[:cut] + bytes([rng.choice(NOT_NEWLINE)]) + line[cut + 1 :]
    return line


def test_odd_lines_each_get_one_row(landing):
    rng = random.Random(20261001)
    body = b"\n".join(odd_event(rng) for _ in range(1500)) + b"\n"
    landing.write("a.jsonl", body)
    landing.write("b.jsonl", body + b"\n")  # other bytes, same lines: every key repeats
    result = landing.ingest()
    assert [f.lines_read for f in result.files] == [1500, 1500]
    rows = landing.events()
    assert len(rows) == 3000
    reasons = {e["parse_reason"] for e in rows}
    assert None in reasons and "malformed" in reasons and "missing_field" in reasons
    for e in rows:
        assert (e["key_rank"] is None) == (e["parse_reason"] is not None)
        if e["parse_reason"] is None:
            assert isinstance(json.loads(e["properties"]), dict)
            assert e["payload_hash"] is not None  # every parsed key repeats in b.jsonl
