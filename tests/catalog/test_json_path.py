"""Issue 19, bug 6: property names are matched exactly, whatever characters they have.

DuckDB's JSON path reads a quoted key literally, taking a backslash only as the escape of
the next character: `$."\\u00fc"` names a key spelled backslash-u-0-0-f-c, never `ü`.
"""

from __future__ import annotations

import json
import textwrap

import duckdb
import pytest

from orchestration.catalog import load_catalog
from orchestration.catalog.tables.metering import write_metering_tables
from orchestration.sql import quote_json_path

NASTY = [
    "région",
    "modèle",
    "ü",
    "日本",
    'a"b',
    "a\\b",
    "a.b",
    "$x",
    "a b",
    "😀",
    "a'b",
    "\\u00fc",  # the six characters, not ü
    'a\\"b',
    "a\\",
    '"',
    "a[0]",
    "*",
    "x\u2028y",
    " ",
    "e\u0301",  # decomposed é: a different key from the composed one
    "a\tb",
    "a\nb",
    "a\x01b",
    "a\x7fb",
]
# every name with a distinct value, and decoys a sloppy quoting would hit instead
DOCUMENT = {name: f"v{i}" for i, name in enumerate(NASTY)} | {
    "a": "decoy",
    "b": "decoy",
    "x": "decoy",
    "é": "decoy",
    "u00fc": "decoy",
}


@pytest.fixture(scope="module")
def con():
    con = duckdb.connect()
    yield con
    con.close()


@pytest.mark.parametrize("i", range(len(NASTY)), ids=[repr(n) for n in NASTY])
def test_json_extract_string_finds_exactly_that_key(con, i):
    path = quote_json_path(NASTY[i])
    doc = json.dumps(DOCUMENT)
    got = con.execute(f"SELECT json_extract_string(CAST(? AS JSON), {path})", [doc]).fetchone()
    assert got == (f"v{i}",), path
    raw = con.execute(f"SELECT json_extract(CAST(? AS JSON), {path})", [doc]).fetchone()
    assert raw == (json.dumps(f"v{i}"),), path


@pytest.mark.parametrize("i", range(len(NASTY)), ids=[repr(n) for n in NASTY])
def test_a_missing_key_is_null(con, i):
    doc = json.dumps({k: v for k, v in DOCUMENT.items() if k != NASTY[i]})
    path = quote_json_path(NASTY[i])
    assert con.execute(
        f"SELECT json_extract_string(CAST(? AS JSON), {path})", [doc]
    ).fetchone() == (None,)


@pytest.mark.parametrize("name", ["", "a\x00b"])
def test_names_no_path_can_hold_are_refused(name):
    with pytest.raises(ValueError):
        quote_json_path(name)


CATALOG = """
exclusions:
  - {reason: eu_sandbox, property: région, op: eq, value: eu}
meters:
  - code: calls
    event_name: api.request
    aggregation: count
    filters: [{property: modèle, op: in, values: [grand, petit]}]
    group_by: [modèle, 日本]
  - {code: users, event_name: api.request, aggregation: count_unique, expression: user}
customers:
  - {id: acme}
"""


def _evaluate(con, sql: str, props: dict):
    return con.execute(
        f"SELECT {sql} FROM (SELECT CAST(? AS JSON) AS properties, 'acme' AS customer_id, "
        "'api.request' AS event_name, NULL AS source)",
        [json.dumps(props, ensure_ascii=False)],
    ).fetchone()[0]


def test_non_ascii_names_through_the_compiled_catalog_tables(tmp_path):
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "a.yaml").write_text(textwrap.dedent(CATALOG), encoding="utf-8")
    con = duckdb.connect()
    write_metering_tables(con, load_catalog(folder))
    (excluded,) = con.execute("SELECT condition_sql FROM meterbook_catalog.exclusions").fetchone()
    match, group = con.execute(
        "SELECT match_sql, group_key_sql FROM meterbook_catalog.meters WHERE meter_code = 'calls'"
    ).fetchone()
    assert _evaluate(con, excluded, {"région": "eu"}) is True
    assert _evaluate(con, excluded, {"région": "us"}) is False
    assert _evaluate(con, match, {"modèle": "grand"}) is True
    assert _evaluate(con, match, {"modèle": "moyen"}) is False
    key = json.loads(_evaluate(con, group, {"modèle": "grand", "日本": 7}))
    assert key == {"modèle": "grand", "日本": "7"}
