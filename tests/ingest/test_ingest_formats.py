"""Every landing format of SPEC 2.1, gzipped or not, and files that cannot be read."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from ingest_helpers import event, jsonl

TS = datetime(2026, 10, 2, 10, tzinfo=UTC)
TWO = jsonl(event("e1", properties={"n": 1}), event("e2", properties={"s": "x"}))


def summary(landing):
    return [(e["path"], e["line_no"], e["event_id"], e["parse_reason"]) for e in landing.events()]


def file_rows(landing):
    return landing.rows(
        "SELECT path, format, lines_read, error FROM meterbook_raw.landing_files ORDER BY file_seq"
    )


@pytest.mark.parametrize("name", ["a.jsonl", "a.ndjson", "a.json", "A.JSONL"])
@pytest.mark.parametrize("gz", [False, True])
def test_json_lines(landing, name, gz):
    name = name + (".gz" if gz else "")
    landing.write(name, TWO, gz=gz)
    result = landing.ingest()
    assert summary(landing) == [(name, 1, "e1", None), (name, 2, "e2", None)]
    assert [json.loads(e["properties"]) for e in landing.events()] == [{"n": 1}, {"s": "x"}]
    assert result.files[0].format == name.lower().split(".", 1)[1]


def test_crlf_bom_and_last_line_without_newline(landing):
    body = json.dumps(event("e1")) + "\r\n\r\n" + json.dumps(event("e2"))
    landing.write("a.jsonl", b"\xef\xbb\xbf" + body.encode())
    landing.ingest()
    assert summary(landing) == [("a.jsonl", 1, "e1", None), ("a.jsonl", 3, "e2", None)]


@pytest.mark.parametrize("gz", [False, True])
def test_json_array(landing, gz):
    doc = (
        "\ufeff [\n" + json.dumps(event("e1")) + ",\n 5,\n [1],\n" + json.dumps(event("e2")) + "\n]"
    )
    path = "arr.json" + (".gz" if gz else "")
    landing.write(path, doc, gz=gz)
    landing.ingest()
    assert summary(landing) == [
        (path, 1, "e1", None),
        (path, 2, None, "malformed"),
        (path, 3, None, "malformed"),
        (path, 4, "e2", None),
    ]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("tail", [",", ",\n  \r\n", ", " + " " * 70_000])
def test_a_json_array_cut_after_a_comma_is_unreadable(landing, gz, tail):
    """DuckDB's array reader takes `[{...},` as a whole array: a file cut there was billed."""
    path = "cut.json" + (".gz" if gz else "")
    landing.write(path, "[" + json.dumps(event("e1")) + tail, gz=gz)
    result = landing.ingest()
    assert "the array is not closed by ']'" in result.files[0].error
    assert summary(landing) == [(path, 0, None, "malformed")]


def test_json_array_keeps_element_order(landing):
    landing.write("big.json", json.dumps([event(f"e{i:05d}") for i in range(3000)]))
    landing.ingest()
    rows = landing.events()
    assert [e["event_id"] for e in rows] == [f"e{i:05d}" for i in range(3000)]
    assert [e["line_no"] for e in rows] == list(range(1, 3001))


def test_empty_files_have_no_lines(landing):
    for name in ["empty.jsonl", "empty.json", "empty.csv", "arr.json", "header.csv"]:
        landing.write(name, {"arr.json": "[]", "header.csv": "event_id,timestamp\n"}.get(name, ""))
    landing.write("empty.jsonl.gz", "", gz=True)
    result = landing.ingest()
    # empty.jsonl, empty.json and empty.csv hold the same (no) bytes: one content, two copies
    assert len(result.files) == 4 and len(result.skipped_copies) == 2
    assert result.lines_read == 0 and landing.events() == []
    assert all(error is None for *_, error in file_rows(landing))


def test_csv_with_property_columns(landing):
    landing.write(
        "b.csv",
        "event_id,customer_id,event_name,timestamp,properties.tokens,properties.model,source\r\n"
        'c1,acme,llm,2026-10-02T10:00:00Z,1500,"large, v2",batch\r\n'
        "c2,acme,llm,1791763200,,,\r\n"
        "c3,acme,llm\r\n"
        "\r\n"
        'c4,acme,"multi\nline",2026-10-02T10:00:00Z,7,,\r\n',
    )
    landing.ingest()
    rows = landing.events()
    assert [(e["line_no"], e["event_id"], e["parse_reason"]) for e in rows] == [
        (2, "c1", None),
        (3, "c2", None),
        (4, None, "malformed"),
        (6, "c4", None),
    ]
    assert json.loads(rows[0]["properties"]) == {"tokens": "1500", "model": "large, v2"}
    assert rows[0]["source"] == "batch" and rows[1]["source"] is None
    assert json.loads(rows[1]["properties"]) == {}  # empty cells are absent
    assert rows[1]["event_ts"] == datetime(2026, 10, 12, tzinfo=UTC)  # an epoch cell
    assert rows[3]["event_name"] == "multi\nline"
    assert rows[2]["raw_line"] == "c3,acme,llm"


def test_csv_with_a_json_properties_column(landing):
    landing.write(
        "b.csv.gz",
        "event_id,customer_id,event_name,timestamp,properties\n"
        'c1,acme,x,2026-10-02T10:00:00Z,"{""gb"": 2.5, ""tag"": null}"\n'
        "c2,acme,x,2026-10-02T10:00:00Z,{broken\n"
        'c3,acme,x,2026-10-02T10:00:00Z,"{""a"": {""b"": 1}}"\n'
        "c4,acme,x,2026-10-02T10:00:00Z,\n",
        gz=True,
    )
    landing.ingest()
    rows = landing.events()
    assert [e["parse_reason"] for e in rows] == [None, "malformed", "bad_property", None]
    assert json.loads(rows[0]["properties"]) == {"gb": 2.5}


def test_csv_unterminated_quote_swallows_the_rest_as_one_malformed_record(landing):
    landing.write("b.csv", 'event_id,customer_id,event_name,timestamp\n"c1,acme\nc2,acme,x,t\n')
    result = landing.ingest()
    assert summary(landing) == [("b.csv", 2, None, "malformed")]
    assert result.lines_read == 1


def test_csv_with_both_property_styles_is_unreadable(landing):
    landing.write("b.csv", "event_id,properties,properties.a\ne1,{},1\n")
    result = landing.ingest()
    assert result.files[0].lines_read == 1 and "properties" in result.files[0].error
    assert summary(landing) == [("b.csv", 0, None, "malformed")]


def _parquet(landing, name, table: pa.Table, gz=False):
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    data = sink.getvalue().to_pybytes()
    landing.write(name, data, gz=gz)
    return data


@pytest.mark.parametrize("gz", [False, True])
def test_parquet_with_typed_columns(landing, gz):
    table = pa.table(
        {
            "event_id": ["p1", "p2", "p3"],
            "customer_id": ["acme", "acme", None],
            "event_name": ["gpu", "gpu", "gpu"],
            "timestamp": pa.array([TS, TS, TS], pa.timestamp("us", tz="UTC")),
            "properties": pa.array(
                [
                    {"ms": 1500, "ratio": 0.5, "ok": True},
                    {"ms": None, "ratio": None, "ok": False},
                    {"ms": 1, "ratio": 1.0, "ok": True},
                ],
                pa.struct([("ms", pa.int64()), ("ratio", pa.float64()), ("ok", pa.bool_())]),
            ),
        }
    )
    _parquet(landing, "p.parquet" + (".gz" if gz else ""), table, gz=gz)
    landing.ingest()
    rows = landing.events()
    assert [(e["line_no"], e["parse_reason"]) for e in rows] == [
        (1, None),
        (2, None),
        (3, "missing_field"),
    ]
    assert rows[0]["event_ts"] == TS
    assert json.loads(rows[0]["properties"]) == {"ms": 1500, "ratio": 0.5, "ok": True}
    assert json.loads(rows[1]["properties"]) == {"ok": False}


def test_parquet_naive_timestamps_lack_an_offset(landing):
    naive = pa.array([datetime(2026, 10, 2, 10)], pa.timestamp("us"))
    epoch = pa.array([1791763200000], pa.int64())
    base = {"event_id": ["p1"], "customer_id": ["acme"], "event_name": ["x"]}
    _parquet(landing, "naive.parquet", pa.table({**base, "timestamp": naive}))
    _parquet(landing, "epoch.parquet", pa.table({**base, "event_id": ["p2"], "timestamp": epoch}))
    landing.ingest()
    assert {e["event_id"]: e["parse_reason"] for e in landing.events()} == {
        "p1": "bad_timestamp",
        "p2": None,
    }


def test_parquet_json_text_and_flat_property_columns(landing):
    base = {
        "event_id": ["p1"],
        "customer_id": ["acme"],
        "event_name": ["x"],
        "timestamp": ["2026-10-02T10:00:00Z"],
    }
    _parquet(landing, "text.parquet", pa.table({**base, "properties": ['{"a": 1}']}))
    _parquet(
        landing,
        "flat.parquet",
        pa.table({**base, "event_id": ["p2"], "properties.a": [2], "properties.b": [None]}),
    )
    landing.ingest()
    assert [json.loads(e["properties"]) for e in landing.events()] == [{"a": 2}, {"a": 1}]


def test_unreadable_files_count_as_one_malformed_line(landing):
    data = _parquet(landing, "good.parquet", pa.table({"event_id": ["p1"] * 1000}))
    landing.write("cut.parquet", data[: len(data) // 2])
    landing.write("noise.jsonl.gz", b"\x1f\x8b this is not gzip")
    whole = gzip.compress(TWO.encode() * 200)
    landing.write("cut.jsonl.gz", whole[: len(whole) // 2])
    landing.write("broken.json", '[{"event_id": "e1"}, {"event_id": ')
    result = landing.ingest()
    errors = {f.path: f.error for f in result.files}
    assert errors["good.parquet"] is None
    assert all(errors[p] for p in ["cut.parquet", "noise.jsonl.gz", "cut.jsonl.gz", "broken.json"])
    for path in ["cut.parquet", "noise.jsonl.gz", "cut.jsonl.gz", "broken.json"]:
        rows = landing.events("path = ?", [path])
        assert [(e["line_no"], e["parse_reason"]) for e in rows] == [(0, "malformed")]
        assert rows[0]["raw_line"] == errors[path]


def test_a_file_cut_after_a_batch_leaves_none_of_its_rows(landing):
    whole = gzip.compress(TWO.encode() * 5000)
    landing.write("cut.jsonl.gz", whole[: len(whole) - 200])
    landing.write("z.jsonl", jsonl(event("e1")))
    result = landing.ingest(chunk_bytes=1 << 16)  # several batches before the cut is found
    assert [f.lines_read for f in result.files] == [1, 1]
    assert landing.rows("SELECT count(*) FROM meterbook_raw.raw_events") == [(2,)]
    assert [(e["key_rank"], e["key_repeated"]) for e in landing.events("path = 'z.jsonl'")] == [
        (1, False)
    ]


def test_other_files_are_ignored(landing):
    landing.write("notes.txt", "hello")
    landing.write("a.jsonl.tmp", TWO)
    landing.write(".hidden.jsonl", TWO)
    landing.write(".staging/b.jsonl", TWO)
    landing.write("_SUCCESS", "")
    result = landing.ingest()
    assert result.files == [] and landing.events() == []
    assert landing.rows("SELECT count(*) FROM meterbook_raw.landing_file_paths") == [(0,)]


def test_lines_read_equals_rows_per_file(landing):
    landing.write("a.jsonl", TWO + "oops\n\n")
    landing.write("d/b.csv", "event_id,customer_id,event_name,timestamp\nx,y,z,w\n")
    landing.write("c.json", "[1, 2, 3]")
    landing.ingest()
    assert landing.lines_per_file() == [("a.jsonl", 3, 3), ("c.json", 3, 3), ("d/b.csv", 1, 1)]
