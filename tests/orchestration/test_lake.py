"""The lake folder's DuckDB side (settings.warehouse: spark): what is handed to Spark, and how
Spark's Parquet is read back. Spark itself is exercised by tests/spark/."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from orchestration.catalog import load_catalog
from orchestration.catalog.tables.dialects import dialect
from orchestration.catalog.tables.metering import metering_rows
from orchestration.defs.dbt.runner import partition_env
from orchestration.defs.dbt.spark_stage import on_spark, replaced_rows, spark_schema
from orchestration.warehouse.billing import ensure_billing_schema
from orchestration.warehouse.lake import LakeTable, read_back, write_inputs
from orchestration.warehouse.raw import ensure_raw_schema
from orchestration.workspace import Workspace

DAILY = "marts.fct_daily_meter_usage"
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
