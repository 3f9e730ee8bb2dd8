"""The Spark tier: a PySpark session on 127.0.0.1, started once for the session's Spark tests.

Skipped, saying why, when PySpark (the `spark` extra, which `scripts/setup.sh --test`
installs) or a Java runtime is missing.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import duckdb
import pytest

# the metering tests' helper that runs dbt's decimal macros on a Python connection
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "metering"))
from metering_fixtures import create_decimal_macros  # noqa: E402

from orchestration.defs.dbt.spark_stage import spark_session  # noqa: E402


@pytest.fixture(scope="session")
def spark_runtime():
    """PySpark and a Java runtime are here (the tier is skipped, saying which is missing, when
    not)."""
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip("PySpark is not installed (pip install -c constraints.txt -e '.[spark]')")
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java runtime for Spark (apt-get install openjdk-17-jre-headless)")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)


@pytest.fixture(scope="session")
def spark(spark_runtime, tmp_path_factory):
    """A PySpark session on 127.0.0.1 configured as meterbook starts its own."""
    # the session's tables (dbt's too, through its `session` method) live in a test folder
    session = spark_session(tmp_path_factory.mktemp("spark-warehouse"), "local[2]")
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
