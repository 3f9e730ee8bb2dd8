"""The meterbook_entitlements table: the current period of every active subscription,
written by billing/entitlements/windows.py before the entitlement models run."""

from __future__ import annotations

import duckdb

from orchestration.catalog.tables.billing import Columns, ddl

SCHEMA = "meterbook_entitlements"

CURRENT_WINDOWS: Columns = [
    ("window_id", "VARCHAR"),
    ("subscription_id", "VARCHAR"),
    ("billing_customer_id", "VARCHAR"),
    ("window_start", "TIMESTAMPTZ"),
    ("window_end", "TIMESTAMPTZ"),
    ("as_of", "TIMESTAMPTZ"),  # the usage watermark the period was chosen at
]


def ensure_entitlements_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {ddl(f'{SCHEMA}.current_windows', CURRENT_WINDOWS)}")
