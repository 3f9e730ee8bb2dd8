"""A month costs a month: closing month 2 with month 1 stored reads none of month 1's rows.

Month 1's events fill exactly one DuckDB row group (122,880 rows), so month 2's are stored in
row groups of their own, and DuckDB's profile says how many rows each table scan read. After
month 1 is metered and rated, month 2's events are added; then
- the fates build of month 2 fates month 2's events and no other (the rows it reports), and
- the close's metering query for month 2 (int_meter_quantities_windowed, as dbt compiled it)
  scans no row of month 1 in the raw events or in the fates (DuckDB's profile).
"""

from __future__ import annotations

import json

from metering_fixtures import (
    _DBT_TARGET,
    Warehouse,
    _file_seqs,
    _rank_keys,
    _register_files,
    catalog_from_yaml,
)

from orchestration.catalog.tables.metering import write_metering_tables
from orchestration.sql import connect

ROW_GROUP = 122_880  # DuckDB's default row group size
CATALOG = """
customers:
  - {id: acme}
meters:
  - {code: calls, event_name: api.request, aggregation: count}
  - {code: tokens, event_name: api.request, aggregation: sum, expression: tokens}
"""
PERIOD = "+fct_period_meter_quantities"
WINDOWS = [
    ("2026-10", "w-oct", "acme", "2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z"),
    ("2026-11", "w-nov", "acme", "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"),
]


def _add_month(con, month: str, n: int) -> None:
    """n events of acme spread over `month` (2026-10 or 2026-11), appended in read order."""
    path = f"{month}.jsonl"
    file_seq = _file_seqs(con, [path])[path]
    first = con.execute("SELECT coalesce(max(read_seq), 0) FROM meterbook_raw.raw_events")
    first = first.fetchone()[0]
    con.execute(
        f"""
        INSERT INTO meterbook_raw.raw_events (read_seq, file_seq, path, line_no, event_id,
            customer_id, event_name, event_ts, properties, parse_reason, ingested_at)
        SELECT {first} + i + 1, {file_seq}, '{path}', i + 1, '{month}-' || i, 'acme',
            'api.request',
            TIMESTAMPTZ '{month}-01 00:00:00+00' + to_microseconds(i * (86400000000 * 28 // {n})),
            json_object('tokens', i % 7), NULL, TIMESTAMPTZ '2026-12-02 00:00:00+00'
        FROM range({n}) AS t(i) ORDER BY i
        """
    )
    _register_files(con, {path: file_seq})
    _rank_keys(con)


def _scans(con, sql: str, profile) -> list[tuple[str, int]]:
    """(table, rows_scanned) of every table scan in DuckDB's profile of `sql`."""
    con.execute("PRAGMA enable_profiling = 'json'")
    con.execute(f"SET profiling_output = '{profile}'")
    con.execute(f"SELECT count(*) FROM ({sql})").fetchall()
    con.execute("PRAGMA disable_profiling")
    scanned: list[tuple[str, int]] = []

    def walk(node: dict) -> None:
        if node.get("type") == "TABLE_SCAN" and "Table" in node.get("extra_info", {}):
            table = node["extra_info"]["Table"].split(".")[-1]
            scanned.append((table, int(node.get("rows_scanned", 0))))
        for child in node.get("children", []):
            walk(child)

    for node in json.loads(profile.read_text())["operator"]:
        walk(node)
    return scanned


def test_month_two_reads_no_row_of_month_one(tmp_path):
    wh = Warehouse(tmp_path)
    wh.setup(catalog_from_yaml(tmp_path, CATALOG), [], WINDOWS)
    with wh.connect() as con:
        _add_month(con, "2026-10", ROW_GROUP)
    wh.dbt("build")
    wh.dbt("run", PERIOD, close_month="2026-10")
    with wh.connect() as con:
        _add_month(con, "2026-11", 5_000)
        write_metering_tables(con, catalog_from_yaml(tmp_path, CATALOG))
    wh.dbt("build")
    wh.dbt("run", PERIOD, close_month="2026-11")

    # the fates build of month 2 fated month 2's events, after month 1's watermark
    assert wh.rows(
        "SELECT count(*), min(read_seq), min(fated_after) FROM intermediate.int_events_fated "
        "WHERE fated_in = (SELECT fated_in FROM intermediate.int_events_fated "
        "ORDER BY read_seq DESC LIMIT 1)"
    ) == [(5_000, ROW_GROUP + 1, ROW_GROUP)]
    assert wh.rows(
        "SELECT quantity, event_count FROM marts.fct_period_meter_quantities "
        "WHERE close_month = '2026-11' AND meter_code = 'calls'"
    ) == [(5_000, 5_000)]

    compiled = next(_DBT_TARGET.rglob("compiled/**/int_meter_quantities_windowed.sql"))
    with connect(wh.path) as con:
        assert _row_groups(con, "meterbook_raw", "raw_events") >= 2
        scans = _scans(con, compiled.read_text(), tmp_path / "profile.json")
    events = [(table, rows) for table, rows in scans if table in ("raw_events", "int_events_fated")]
    assert events, scans
    assert all(0 < rows <= 5_000 for _, rows in events), scans
    _current_period_reads_only_its_month(wh, tmp_path)


def _current_period_reads_only_its_month(wh, tmp_path) -> None:
    """Entitlements cost what the current period's usage costs (SPEC 9): the usage of the
    current window (November) scans none of October's rows either."""
    from orchestration.warehouse.entitlements import ensure_entitlements_schema  # noqa: PLC0415

    with wh.connect() as con:
        ensure_entitlements_schema(con)
        con.execute(
            "INSERT INTO meterbook_entitlements.current_windows VALUES ('sub:2026-11-01', 'sub', "
            "'acme', '2026-11-01 00:00:00+00', '2026-12-01 00:00:00+00', '2026-11-28 00:00:00+00')"
        )
    wh.dbt(
        "run",
        "stg_entitlements__current_windows int_current_period_events fct_current_period_usage",
    )
    assert wh.rows(
        "SELECT quantity, event_count FROM marts.fct_current_period_usage WHERE meter_code = 'calls'"
    ) == [(5_000, 5_000)]
    compiled = next(_DBT_TARGET.rglob("compiled/**/fct_current_period_usage.sql"))
    with connect(wh.path) as con:
        scans = _scans(con, compiled.read_text(), tmp_path / "current.json")
    events = [(table, rows) for table, rows in scans if table in ("raw_events", "int_events_fated")]
    assert events, scans
    assert all(0 < rows <= 5_000 for _, rows in events), scans


def _row_groups(con, schema: str, table: str) -> int:
    return con.execute(
        f"SELECT count(DISTINCT row_group_id) FROM pragma_storage_info('{schema}.{table}')"
    ).fetchone()[0]
