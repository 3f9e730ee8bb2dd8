"""The meterbook_billing tables: what Python decides for a close, for dbt to rate.

- The window tables (`WINDOW_TABLES`, billing/windows.py writes them for each close month):
  `invoice_periods`, `segments`, `meter_windows`, `prior_fee_lines`.
- The late-usage tables (billing/adjustments.py): `adjustment_lines` (rating reads it, so it
  exists, empty, before the first dbt run), `rerated_usage`, `rerate_runs`.
- `draft_builds` (billing/freshness.py): what each month's drafts were built from.
"""

from __future__ import annotations

import duckdb

from orchestration.catalog.tables.billing import Columns, ddl
from orchestration.warehouse.models import model_exists, relation

SCHEMA = "meterbook_billing"
_D = "DECIMAL(38, 12)"

WINDOW_TABLES: dict[str, Columns] = {
    "invoice_periods": [
        ("close_month", "VARCHAR"),
        ("invoice_id", "VARCHAR"),
        ("subscription_id", "VARCHAR"),
        ("customer_id", "VARCHAR"),
        ("plan_code", "VARCHAR"),
        ("currency", "VARCHAR"),
        ("currency_exponent", "INTEGER"),
        ("tax_rate", _D),
        ("timezone", "VARCHAR"),
        ("period_start", "DATE"),  # the period cut to the subscription's active dates
        ("period_end", "DATE"),
        ("full_period_start", "DATE"),
        ("full_period_end", "DATE"),
        ("next_period_start", "DATE"),  # the full next period (in-advance fees)
        ("next_period_end", "DATE"),
        ("period_number", "INTEGER"),  # 1 for the period containing start_date
        ("is_first_period", "BOOLEAN"),
    ],
    "segments": [
        ("close_month", "VARCHAR"),
        ("invoice_id", "VARCHAR"),
        ("period_role", "VARCHAR"),  # 'current' (usage and fees) | 'next' (in-advance fees)
        ("segment_no", "INTEGER"),
        ("window_id", "VARCHAR"),  # the metering window ('current' segments only)
        ("segment_start", "DATE"),
        ("segment_end", "DATE"),
        ("plan_code", "VARCHAR"),
        ("version", "INTEGER"),
        ("is_trial", "BOOLEAN"),
        ("days", "INTEGER"),
        ("period_days", "INTEGER"),  # days of the full period the segment belongs to
    ],
    "meter_windows": [
        ("close_month", "VARCHAR"),
        ("window_id", "VARCHAR"),
        ("billing_customer_id", "VARCHAR"),
        ("window_start", "TIMESTAMPTZ"),
        ("window_end", "TIMESTAMPTZ"),
        # the full period the window's segment is part of: a time_weighted level is weighted
        # by its share of the period (SPEC 3.1), so the segments of a period add up to it
        ("period_start", "TIMESTAMPTZ"),
        ("period_end", "TIMESTAMPTZ"),
    ],
    "prior_fee_lines": [
        ("close_month", "VARCHAR"),
        ("invoice_id", "VARCHAR"),
        ("fee_code", "VARCHAR"),
        ("amount", _D),
    ],
}


# What each month's drafts were built from (freshness.py): one row per close month.
DRAFT_BUILDS_DDL = f"""
CREATE TABLE IF NOT EXISTS {SCHEMA}.draft_builds (
    close_month VARCHAR PRIMARY KEY,
    usage_read_seq BIGINT NOT NULL,          -- the last raw event the usage models had fated
    inputs_digest VARCHAR NOT NULL,          -- sha256 of the ledger-derived rows used
    complete BOOLEAN NOT NULL,               -- the drafts and documents were built from them
    built_at TIMESTAMPTZ NOT NULL
)
"""

ADJUSTMENT_DDL = """
CREATE TABLE IF NOT EXISTS meterbook_billing.adjustment_lines (
    close_month VARCHAR NOT NULL,            -- the month whose invoice carries the line
    subscription_id VARCHAR NOT NULL,
    line_id VARCHAR NOT NULL,
    meter VARCHAR,                           -- NULL: the spend-level true-ups and caps
    group_key JSON,
    description VARCHAR NOT NULL,
    period_start DATE NOT NULL,              -- the finalized period the usage belongs to
    period_end DATE NOT NULL,
    quantity DECIMAL(38, 12),                -- the usage quantity difference (meter units)
    amount DECIMAL(38, 12) NOT NULL,         -- rounded to the invoice currency
    PRIMARY KEY (close_month, line_id)
);
CREATE TABLE IF NOT EXISTS meterbook_billing.rerated_usage (
    source_month VARCHAR NOT NULL,           -- the finalized month that was re-rated
    subscription_id VARCHAR NOT NULL,
    meter VARCHAR,
    group_key JSON,                          -- canonical: sorted keys, NULL for no group
    group_display JSON,                      -- the group as rating printed it
    quantity DECIMAL(38, 12) NOT NULL,
    amount DECIMAL(38, 12) NOT NULL
);
CREATE TABLE IF NOT EXISTS meterbook_billing.rerate_runs (
    source_month VARCHAR PRIMARY KEY,
    raw_read_seq BIGINT NOT NULL,            -- raw events up to here are in rerated_usage
    rerated_at TIMESTAMPTZ NOT NULL
);
"""


# Columns the window tables gained after warehouses existed
_LATER_WINDOW_COLUMNS = (
    ("meter_windows", "period_start", "TIMESTAMPTZ"),
    ("meter_windows", "period_end", "TIMESTAMPTZ"),
)


def ensure_billing_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table of the schema that does not exist yet."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    for name, columns in WINDOW_TABLES.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {ddl(f'{SCHEMA}.{name}', columns)}")
    for name, column, sql_type in _LATER_WINDOW_COLUMNS:
        # NULL in the rows of months closed before: the next close of a month rewrites them
        con.execute(f"ALTER TABLE {SCHEMA}.{name} ADD COLUMN IF NOT EXISTS {column} {sql_type}")
    con.execute(ADJUSTMENT_DDL)
    con.execute(DRAFT_BUILDS_DDL)


# Columns the invoice-line mart gained after warehouses existed (SPEC 7's credit price): the
# incremental model refuses a changed schema, so they are added, empty, before a build.
_LATER_LINE_COLUMNS = (("credit_quantity", "DECIMAL(38, 12)"), ("credit_price", "DECIMAL(38, 12)"))


def add_later_invoice_line_columns(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Add the columns fct_invoice_lines gained since the warehouse was built; their names."""
    if not model_exists(con, "fct_invoice_lines"):
        return []
    schema, table = relation("fct_invoice_lines").split(".")
    present = {
        row[0]
        for row in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
            "AND database_name = current_database()",
            [schema, table],
        ).fetchall()
    }
    added = [name for name, _ in _LATER_LINE_COLUMNS if name not in present]
    for name, sql_type in _LATER_LINE_COLUMNS:
        if name in added:
            con.execute(f"ALTER TABLE {schema}.{table} ADD COLUMN {name} {sql_type}")
    return added
