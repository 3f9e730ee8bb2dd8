"""The catalog as warehouse tables (schema meterbook_catalog), rewritten before every dbt run."""

from __future__ import annotations

import duckdb

from orchestration.catalog.models import Catalog


def write_catalog_tables(con: duckdb.DuckDBPyConnection, catalog: Catalog) -> None:
    from orchestration.catalog.tables.billing import write_billing_tables
    from orchestration.catalog.tables.metering import write_metering_tables

    con.execute("CREATE SCHEMA IF NOT EXISTS meterbook_catalog")
    write_metering_tables(con, catalog)
    write_billing_tables(con, catalog)
