"""The SQL that turns records into parsed raw events (beside it: sql/*.sql).

Every format is first brought to one shape, a relation of (line_no, doc, raw_text) where `doc`
is the record as a JSON object text, and then `sql/parse_records.sql` applies the checks of
SPEC 2.3 the same way for all of them. The per-format part is built here. Column names and
cells from files reach the SQL only as quoted literals or identifiers, or as bound values.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import duckdb

from orchestration.ingest.records import TOO_LONG
from orchestration.sql import quote_identifier, quote_literal

SQL_DIR = Path(__file__).parent / "sql"
SOURCE = "_mbi_src"  # the Arrow table registered for one batch

# A CSV record (RFC 4180, comma, double quote) and its cells. A comma is put in front of the
# record so that every cell, the first included, is matched as "comma + cell".
CSV_RECORD_RE = '(?:"(?:[^"]|"")*"|[^,"]*)(?:,(?:"(?:[^"]|"")*"|[^,"]*))*'
CSV_CELL_RE = ',("(?:[^"]|"")*"|[^,"]*)'
# a CSV timestamp cell holding a plain number is an epoch (SPEC 2.2: CSV cells are strings)
CSV_EPOCH_RE = "-?(0|[1-9][0-9]*)(\\.[0-9]+)?"


@cache
def _sql_file(name: str) -> str:
    return (SQL_DIR / name).read_text()


def create_macros(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_sql_file("macros.sql"))


def parse_query(docs_sql: str) -> str:
    """The parse of `docs_sql`; parameters $now and $seq_base."""
    return _sql_file("parse_records.sql").replace("/*DOCS*/", docs_sql)


def json_lines_docs() -> str:
    """Docs of a JSON-lines batch: one record a line; blank lines are skipped."""
    return f"""
        select line_no, doc, coalesce(doc, cast(raw as varchar)) as raw_text
        from (select line_no, raw, try(decode(raw)) as doc from {SOURCE})
        where doc is null or not mbi_blank(doc)
    """


def too_long_docs() -> str:
    """Docs of records longer than max_line_bytes (records.py): no doc, so each is one
    malformed line, and the reason (with the size) as its raw line."""
    return f"select line_no, cast(null as varchar) as doc, {TOO_LONG} as raw_text from {SOURCE}"


def object_docs() -> str:
    """Docs of a batch already made of JSON texts (Parquet rows, JSON array elements)."""
    return f"select line_no, doc, doc as raw_text from {SOURCE}"


def csv_docs(header: list[str]) -> str:
    """Docs of a CSV batch whose columns are `header` (SPEC 2.2: the four fields, `source`,
    and either one `properties` column of JSON or `properties.<key>` columns)."""
    top, nested = _csv_plan(header)
    pairs = [f"{quote_literal(name)}, {_csv_value(name, i)}" for name, i in top]
    if nested:
        inner = ", ".join(f"{quote_literal(key)}, to_json(cells[{i}])" for key, i in nested)
        pairs.append(f"'properties', json_object({inner})")
    obj = f"json_object({', '.join(pairs)})" if pairs else "'{}'"
    return f"""
        select
            line_no,
            case when text is not null and shape_ok and len(cells) = {len(header)}
                then {obj} end as doc,
            coalesce(text, cast(raw as varchar)) as raw_text
        from (
            select
                line_no, raw, text,
                regexp_full_match(text, {quote_literal(CSV_RECORD_RE)}) as shape_ok,
                list_transform(
                    regexp_extract_all(',' || text, {quote_literal(CSV_CELL_RE)}, 1),
                    lambda c: nullif(case when starts_with(c, '"')
                        then replace(c[2:-2], '""', '"') else c end, '')
                ) as cells
            from (
                select line_no, raw, rtrim(try(decode(raw)), chr(13) || chr(10)) as text
                from {SOURCE}
            )
            where text is null or not mbi_blank(text)
        )
    """


class ColumnLayoutError(ValueError):
    """A CSV header or Parquet schema that cannot be read as events."""


def _csv_plan(header: list[str]) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(top-level columns, properties.<key> columns), each with its 1-based cell index."""
    top = [(name, i) for i, name in enumerate(header, 1) if not name.startswith("properties.")]
    nested = [
        (name.removeprefix("properties."), i)
        for i, name in enumerate(header, 1)
        if name.startswith("properties.")
    ]
    _check_property_columns(top, nested)
    return top, nested


def _check_property_columns(top: list[tuple], nested: list[tuple]) -> None:
    if nested and any(name == "properties" for name, _ in top):
        raise ColumnLayoutError(
            "has both a 'properties' column and 'properties.<key>' columns; use one or the other"
        )


def _csv_value(name: str, i: int) -> str:
    cell = f"cells[{i}]"
    if name in ("properties", "data"):
        # a JSON object, or (anything else) a string that the parse rejects as malformed
        return f"case when try_cast({cell} as json) is not null then {cell}::json else to_json({cell}) end"
    if name in ("timestamp", "time"):
        return (
            f"case when regexp_full_match({cell}, {quote_literal(CSV_EPOCH_RE)}) "
            f"then {cell}::json else to_json({cell}) end"
        )
    return f"to_json({cell})"


def parquet_docs_query(path_literal: str, columns: list[tuple[str, str]]) -> str:
    """Rows of a Parquet file as (line_no, doc): typed values stay typed (numbers, booleans);
    a TIMESTAMP WITH TIME ZONE becomes RFC 3339 in UTC; a naive TIMESTAMP is written without
    an offset and so is a bad_timestamp, like the same value in JSON."""
    top = [(n, t) for n, t in columns if not n.startswith("properties.")]
    nested = [(n, t) for n, t in columns if n.startswith("properties.")]
    _check_property_columns(top, nested)
    pairs = [f"{quote_literal(n)}, {_parquet_value(n, t)}" for n, t in top]
    if nested:
        inner = ", ".join(
            f"{quote_literal(n.removeprefix('properties.'))}, {_parquet_value(n, t)}"
            for n, t in nested
        )
        pairs.append(f"'properties', json_object({inner})")
    obj = f"json_object({', '.join(pairs)})" if pairs else "'{}'"
    return (
        f"select file_row_number + 1 as line_no, cast({obj} as varchar) as doc "
        f"from read_parquet({path_literal}, file_row_number = true)"
    )


def _parquet_value(name: str, type_name: str) -> str:
    col = quote_identifier(name)
    if type_name == "TIMESTAMP WITH TIME ZONE":
        return f"to_json(strftime(timezone('UTC', {col}), '%Y-%m-%dT%H:%M:%S.%fZ'))"
    if type_name.startswith("TIMESTAMP") or type_name == "DATE":
        return f"to_json(strftime({col}, '%Y-%m-%dT%H:%M:%S.%f'))"
    if type_name == "VARCHAR" and name in ("properties", "data"):
        return f"case when try_cast({col} as json) is not null then {col}::json else to_json({col}) end"
    return f"to_json({col})"


def json_array_docs_query(path_literal: str, gzipped: bool) -> str:
    """Elements of a JSON array file as (line_no, doc); line_no is the element's position.
    row_number() over () follows the reader's order, which is the file's (single scan)."""
    compression = "gzip" if gzipped else "none"
    return (
        "select row_number() over () as line_no, cast(json as varchar) as doc "
        f"from read_json_objects({path_literal}, format = 'array', "
        f"compression = '{compression}')"
    )
