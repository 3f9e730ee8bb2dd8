"""The lake folder's DuckDB side (settings.warehouse: spark): what is handed to Spark, and how
Spark's Parquet is read back. Spark itself is exercised by tests/spark/."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from orchestration.catalog import load_catalog
from orchestration.catalog.models import Settings
from orchestration.catalog.tables.dialects import dialect
from orchestration.catalog.tables.metering import metering_rows
from orchestration.defs.dbt.runner import partition_env
from orchestration.defs.dbt.spark_stage import (
    build_on_spark,
    on_spark,
    replaced_rows,
    spark_schema,
)
from orchestration.defs.ingest.assets import _spark_reading
from orchestration.warehouse.billing import ensure_billing_schema
from orchestration.warehouse.lake import (
    OWNER_FILE,
    LakeOfAnotherWorkspace,
    LakeTable,
    claim_lake,
    lake_holds_raw_events,
    next_file_seq,
    read_back,
    remove_unrecorded_runs,
    run_folder,
    write_inputs,
)
from orchestration.warehouse.raw import ensure_raw_schema
from orchestration.workspace import Workspace

DAILY = "marts.fct_daily_meter_usage"
SPARK = Settings(warehouse="spark")
TYPES = {"usage_date": "date", "meter_code": "varchar", "group_key": "json"}


def spark_output(con, folder: Path, rows: str) -> LakeTable:
    """Parquet as Spark writes a partitioned model: the partition column last, no JSON type."""
    folder.mkdir(parents=True)
    con.execute(
        f"COPY (SELECT * FROM (VALUES {rows}) AS t(meter_code, group_key, usage_date)) "
        f"TO '{folder}/part-00000.parquet' (FORMAT parquet)"
    )
    return LakeTable(DAILY, folder)


@pytest.fixture
def con():
    with duckdb.connect() as con:
        yield con


def test_a_new_table_takes_the_models_types_and_order(con, tmp_path):
    table = spark_output(con, tmp_path / "a", "('calls', '{\"r\":\"eu\"}', DATE '2026-10-01')")
    assert read_back(con, table, "usage_date >= DATE '2026-10-01'", TYPES) == 1
    described = con.execute(f"DESCRIBE {DAILY}").fetchall()
    assert [(c[0], c[1]) for c in described] == [
        ("usage_date", "DATE"),
        ("meter_code", "VARCHAR"),
        ("group_key", "JSON"),
    ]


def test_only_the_partition_built_is_replaced(con, tmp_path):
    first = "('calls', NULL, DATE '2026-10-01'), ('calls', NULL, DATE '2026-10-02')"
    read_back(con, spark_output(con, tmp_path / "a", first), None, TYPES)
    # Spark rebuilt 2026-10-02 only, where the usage is now gone and another meter has some
    again = spark_output(con, tmp_path / "b", "('tokens', NULL, DATE '2026-10-02')")
    where = replaced_rows("fct_daily_meter_usage", partition_env(
        {"min_date": "2026-10-02", "max_date": "2026-10-03"}))  # fmt: skip
    assert read_back(con, again, where, TYPES) == 1
    assert con.execute(
        f"SELECT usage_date::VARCHAR, meter_code FROM {DAILY} ORDER BY ALL"
    ).fetchall() == [
        ("2026-10-01", "calls"),
        ("2026-10-02", "tokens"),
    ]


def test_without_a_partition_everything_is_replaced(con, tmp_path):
    read_back(con, spark_output(con, tmp_path / "a", "('a', NULL, DATE '2026-10-01')"), None, TYPES)
    read_back(con, spark_output(con, tmp_path / "b", "('b', NULL, DATE '2026-11-01')"), None, TYPES)
    assert con.execute(f"SELECT meter_code FROM {DAILY}").fetchall() == [("b",)]


def test_no_parquet_from_spark_is_an_error_naming_the_folder(con, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        read_back(con, LakeTable(DAILY, tmp_path / "empty"))


def test_spark_is_handed_the_raw_events_windows_and_catalog_in_its_dialect(tmp_path):
    catalog_dir = Path(__file__).resolve().parents[3] / "shared" / "scenarios" / "aggregations"
    if not catalog_dir.is_dir():
        pytest.skip(f"no scenarios at {catalog_dir.parent}")
    catalog = load_catalog(catalog_dir / "catalog")
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        ensure_raw_schema(con)
        ensure_billing_schema(con)
        tables = write_inputs(con, catalog, tmp_path / "lake")
        handed = {t.relation: t.path for t in tables}
        meters = con.execute(
            "SELECT match_sql, value_sql, group_key_sql FROM "
            f"read_parquet('{handed['meterbook_catalog.meters']}/*.parquet') ORDER BY meter_seq"
        ).fetchall()
        with pytest.raises(LookupError, match="not built yet"):
            write_inputs(con, catalog, tmp_path / "lake", ("int_events_fated",))
    assert set(handed) == {
        "meterbook_raw.raw_events",
        "meterbook_raw.repeated_events",
        "meterbook_billing.meter_windows",
        "meterbook_catalog.customers",
        "meterbook_catalog.meters",
        "meterbook_catalog.exclusions",
    }
    assert all(path.is_relative_to(tmp_path / "lake" / "in") for path in handed.values())
    compiled = {
        name: [(m["match_sql"], m["value_sql"], m["group_key_sql"]) for m in rows["meters"]]
        for name, rows in (("spark", metering_rows(catalog, dialect("spark"))),
                           ("duckdb", metering_rows(catalog)))
    }  # fmt: skip
    assert meters == compiled["spark"] != compiled["duckdb"]


def test_spark_builds_the_models_that_read_every_event_only():
    assert on_spark(["fct_invoices", "fct_daily_meter_usage", "int_events_fated"]) == [
        "int_events_fated",
        "fct_daily_meter_usage",
    ]
    assert on_spark(["fct_invoices", "int_billing_lines"]) == []


def test_each_workspace_has_its_own_schemas_on_a_shared_spark(tmp_path, monkeypatch):
    monkeypatch.delenv("METERBOOK_SPARK_SCHEMA", raising=False)
    one, other = (Workspace.from_env(tmp_path / name) for name in ("one", "other"))
    assert spark_schema(one) == spark_schema(Workspace.from_env(tmp_path / "x" / ".." / "one"))
    assert spark_schema(one) != spark_schema(other)
    table = LakeTable("meterbook_raw.raw_events", tmp_path / "in")
    assert (
        table.as_json(spark_schema(one))["relation"]
        == f"{spark_schema(one)}_meterbook_raw.raw_events"
    )
    monkeypatch.setenv("METERBOOK_SPARK_SCHEMA", "acme_prod")
    assert spark_schema(one) == spark_schema(other) == "acme_prod"


@pytest.mark.parametrize("prefix", ["", "1acme", "acme-prod", "a.b", "a b"])
def test_a_spark_schema_prefix_that_is_no_name_is_refused(tmp_path, monkeypatch, prefix):
    monkeypatch.setenv("METERBOOK_SPARK_SCHEMA", prefix)
    with pytest.raises(ValueError, match="METERBOOK_SPARK_SCHEMA"):
        spark_schema(Workspace.from_env(tmp_path))


def _record(con, file_seq: int, by_spark: bool) -> None:
    con.execute(
        "INSERT INTO meterbook_raw.landing_files VALUES (?, 'a.jsonl', 'jsonl', 1, ?, now(), 1, "
        "NULL)",
        [f"sha{file_seq}", file_seq],
    )
    if by_spark:
        con.execute("INSERT INTO meterbook_raw.spark_read_files VALUES (?)", [file_seq])


def test_spark_reads_the_raw_events_of_its_own_ingest_only_when_it_read_every_file(tmp_path):
    lake = tmp_path / "lake"
    folder = run_folder(lake, 1, 2) / "event_date=2026-10-01"
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        ensure_raw_schema(con)
        assert not lake_holds_raw_events(con, lake)  # nothing ingested
        _record(con, 1, by_spark=True)
        assert not lake_holds_raw_events(con, lake)  # no rows in the lake
        folder.mkdir(parents=True)
        (folder / "part-0.parquet").write_bytes(b"")
        assert lake_holds_raw_events(con, lake)
        _record(con, 2, by_spark=False)  # read by a DuckDB ingest (before the move to Spark)
        assert not lake_holds_raw_events(con, lake)


def test_file_seqs_go_past_every_run_folder_even_of_a_failed_run(tmp_path):
    lake = tmp_path / "lake"
    assert next_file_seq(lake) == 1
    for first, last in ((1, 4), (9, 12), (5, 8)):
        run_folder(lake, first, last).mkdir(parents=True)
    (lake / "raw_events" / "_temporary").mkdir()  # Spark's own, of a job under way
    assert next_file_seq(lake) == 13


def test_an_ingest_removes_the_run_folders_with_no_file_on_record(tmp_path):
    lake = tmp_path / "lake"
    for first, last in ((1, 4), (5, 8), (9, 12)):
        (run_folder(lake, first, last) / "event_date=2026-10-01").mkdir(parents=True)
        (run_folder(lake, first, last) / "event_date=2026-10-01" / "part-0.parquet").touch()
    (lake / "raw_events" / "_temporary").mkdir()  # Spark's own, of a job under way
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        ensure_raw_schema(con)
        _record(con, 3, by_spark=True)  # 1-4: one file read whole, the others pending
        _record(con, 12, by_spark=True)
        assert remove_unrecorded_runs(con, lake) == ["ingest=5-8"]
        assert remove_unrecorded_runs(con, lake) == []
    left = sorted(p.name for p in (lake / "raw_events").iterdir())
    assert left == ["_temporary", "ingest=1-4", "ingest=9-12"]
    assert next_file_seq(lake) == 13


def test_a_lake_is_one_workspaces_own(tmp_path, monkeypatch):
    a, b, shared = tmp_path / "a", tmp_path / "b", tmp_path / "shared"
    assert claim_lake(shared, a) == claim_lake(shared, a) == shared
    assert (shared / OWNER_FILE).read_text() == f"{a.resolve()}\n"
    with pytest.raises(LakeOfAnotherWorkspace, match=f"{a.resolve()}.*{OWNER_FILE}"):
        claim_lake(shared, b)
    # refused before either user of the lake, the Spark ingest and the Spark steps, writes
    monkeypatch.setenv("METERBOOK_LAKE", str(shared))
    with pytest.raises(LakeOfAnotherWorkspace), _spark_reading(Workspace(b), SPARK, {}):
        pass
    with pytest.raises(LakeOfAnotherWorkspace):
        build_on_spark(Workspace(b), None, ["int_events_fated"], None)
    assert sorted(p.name for p in shared.iterdir()) == [OWNER_FILE]


def test_a_workspace_that_moved_keeps_the_lake_inside_it(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    claim_lake(before / "lake", before)
    before.rename(after)
    assert claim_lake(after / "lake", after) == after / "lake"
    assert (after / "lake" / OWNER_FILE).read_text() == f"{after.resolve()}\n"


def test_the_raw_events_of_the_lake_are_handed_over_as_a_view_of_the_rows_that_count(tmp_path):
    table = LakeTable("meterbook_raw.raw_events", tmp_path / "a`b", ("r.read_seq", "x.files"))
    handed = table.as_json("mb")
    assert handed["relation"] == "mb_meterbook_raw.raw_events"
    assert handed["query"].startswith(f"SELECT r.read_seq FROM parquet.`{tmp_path}/a``b` AS r ")
    assert "JOIN mb_x.files AS f ON r.file_seq = f.file_seq" in handed["query"]
