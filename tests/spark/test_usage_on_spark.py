"""The usage built on Spark equals DuckDB's, row for row: every fate, every day, every window.

The metering tests' dataset (every fate rule and reason, every filter op and aggregation,
time-weighted carry-in, unit rounding, repeated keys across files, sub-accounts, exclusions by
property, field and event) in two copies of one warehouse: dbt builds the usage models in
one on DuckDB; in the other meterbook's Spark stage (orchestration/defs/dbt/spark_stage.py)
hands the same raw tables, windows and catalog to this PySpark session (dbt-spark's
`session` method), builds them there and reads them back, as a close on Spark does. Every
event's fate, reason, billing customer and day must be equal, every daily usage row and every
window quantity (group keys as text, quantities as exact decimals). The shared scenarios are
closed on both engines by test_close_on_spark.py.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# the metering tests' dataset (every fate rule) and their warehouse helper
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "metering"))
from metering_dataset import CATALOG, EVENTS, WINDOWS  # noqa: E402
from metering_fixtures import Warehouse, catalog_from_yaml  # noqa: E402

from orchestration.defs.dbt.runner import dbt_args, environment, run_dbt
from orchestration.defs.dbt.spark_stage import SPARK_MODELS, build_on_spark
from orchestration.sql import connect
from orchestration.workspace import Workspace

SELECT = "+int_events_fated +fct_daily_meter_usage +int_meter_quantities_windowed"
# what each engine's build is compared by: every event's fate, every day's and every
# metering window's usage
RESULTS = {
    "intermediate.int_events_fated": "read_seq, billing_customer_id, event_date, fate, reason",
    "marts.fct_daily_meter_usage": "usage_date, billing_customer_id, meter_code, "
    "CAST(group_key AS VARCHAR) AS group_key, event_count, daily_quantity",
    "intermediate.int_meter_quantities_windowed": "close_month, window_id, billing_customer_id, "
    "meter_code, CAST(group_key AS VARCHAR) AS group_key, quantity, event_count",
}


def results(warehouse: Path) -> dict[str, list[tuple]]:
    """Each compared table's rows, in the order of all their columns."""
    with connect(warehouse) as con:
        return {
            table: con.execute(f"SELECT {columns} FROM {table} ORDER BY ALL").fetchall()
            for table, columns in RESULTS.items()
        }


def test_every_fate_rule_alike_on_spark(spark, tmp_path):
    warehouse = Warehouse(tmp_path / "duckdb")
    warehouse.folder.mkdir()
    catalog = catalog_from_yaml(tmp_path, CATALOG)
    warehouse.setup(catalog, EVENTS, WINDOWS)
    home = tmp_path / "spark"
    home.mkdir()
    shutil.copy(warehouse.path, home / "warehouse.duckdb")

    run_dbt(warehouse.path, dbt_args("run", SELECT), target_path=tmp_path / "dbt-duckdb")
    with environment({"METERBOOK_SPARK_METHOD": "session"}):  # this process's session
        rows = build_on_spark(Workspace(home), catalog, list(SPARK_MODELS), None)
    ours, theirs = results(warehouse.path), results(home / "warehouse.duckdb")

    assert rows["int_events_fated"] == len(EVENTS), "every event, one fate"
    for table, expected in ours.items():
        assert expected, f"{table}: the dataset gives it rows"
        differing = [(a, b) for a, b in zip(expected, theirs[table], strict=False) if a != b]
        assert len(theirs[table]) == len(expected) and not differing, f"{table}:\n" + "\n".join(
            f"DuckDB {a}\nSpark  {b}" for a, b in differing[:10]
        )
