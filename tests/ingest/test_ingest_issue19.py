"""Issue 19 ("Every cent once"): files caught mid-write or vanishing mid-read, ids that start
with a brace, oversized lines and gzip bombs, symlinks out of landing/ and symlink loops."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from ingest_helpers import event, jsonl

GUID = "{3F2504E0-4F89-11D3-9A0C-0305E82C3301}"


# -- 7: ids and event names that start with a brace or a bracket are text -----------------


def test_brace_ids_are_text_in_json_lines(landing):
    landing.write(
        "a.jsonl",
        jsonl(
            event(GUID, customer_id="[acme]", event_name="{api}.request"),
            event("e2", customer_id={"id": "acme"}),  # an object value is still missing
            event(["e3"]),  # and so is an array
        ),
    )
    landing.ingest()
    rows = [
        (e["event_id"], e["customer_id"], e["event_name"], e["parse_reason"])
        for e in landing.events()
    ]
    assert rows == [
        (GUID, "[acme]", "{api}.request", None),
        ("e2", None, "api.request", "missing_field"),
        (None, "acme", "api.request", "missing_field"),
    ]


def test_brace_ids_are_text_in_csv(landing):
    # every CSV cell is a string, so a cell that starts with a brace is an id like any other
    landing.write(
        "a.csv",
        "event_id,customer_id,event_name,timestamp\n"
        f'"{GUID}",[acme],{{x}},2026-10-02T10:00:00Z\n'
        '"{""a"": 1}",acme,x,2026-10-02T10:00:00Z\n',
    )
    landing.ingest()
    rows = [
        (e["event_id"], e["customer_id"], e["event_name"], e["parse_reason"])
        for e in landing.events()
    ]
    assert rows == [(GUID, "[acme]", "{x}", None), ('{"a": 1}', "acme", "x", None)]


def test_brace_ids_are_text_in_parquet(landing):
    table = pa.table(
        {
            "event_id": [GUID, "p2"],
            "customer_id": ["[acme]", "acme"],
            "event_name": ["{x}", "x"],
            "timestamp": ["2026-10-02T10:00:00Z"] * 2,
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    landing.write("a.parquet", sink.getvalue().to_pybytes())
    # a struct id column is an object value: missing_field
    nested = pa.table(
        {
            "event_id": pa.array([{"a": "p3"}], pa.struct([("a", pa.string())])),
            "customer_id": ["acme"],
            "event_name": ["x"],
            "timestamp": ["2026-10-02T10:00:00Z"],
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(nested, sink)
    landing.write("b.parquet", sink.getvalue().to_pybytes())
    landing.ingest()
    rows = [
        (e["path"], e["event_id"], e["customer_id"], e["event_name"], e["parse_reason"])
        for e in landing.events()
    ]
    assert rows == [
        ("a.parquet", GUID, "[acme]", "{x}", None),
        ("a.parquet", "p2", "acme", "x", None),
        ("b.parquet", None, "acme", "x", "missing_field"),
    ]
