"""The Spark tier: a PySpark session on 127.0.0.1, started once for the session's Spark tests.

Skipped, saying why, when PySpark (the `spark` extra, which `scripts/setup.sh --test`
installs) or a Java runtime is missing.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import duckdb
import pytest

# the metering tests' helper that runs dbt's decimal macros on a Python connection
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "metering"))
from metering_fixtures import create_decimal_macros  # noqa: E402

# what meterbook's Spark target runs with (docs/SCALING.md): exact decimal products, UTC
SPARK_CONF = {
    "spark.sql.decimalOperations.allowPrecisionLoss": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.sql.shuffle.partitions": "2",
    # the meters' Spark SQL is long (each property read is written out, lambdas and all): at
    # the default 1 GiB the metering dataset's window quantities ran the driver out of heap
    # when planned after the dialect tests (java.lang.OutOfMemoryError, 2026-12-07)
    "spark.driver.memory": "2g",
}


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    try:
        from pyspark.sql import SparkSession  # noqa: PLC0415
    except ImportError:
        pytest.skip("PySpark is not installed (pip install -c constraints.txt -e '.[spark]')")
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime for Spark (apt-get install openjdk-17-jre-headless)")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.master("local[2]").appName("meterbook-tests")
    # the session's tables (dbt's too, through its `session` method) live in a test folder
    warehouse = tmp_path_factory.mktemp("spark-warehouse")
    for key, value in {**SPARK_CONF, "spark.sql.warehouse.dir": str(warehouse)}.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def duck():
    """A DuckDB connection with the project's decimal macros (mb_div), as dbt creates them."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    create_decimal_macros(con)
    yield con
    con.close()
