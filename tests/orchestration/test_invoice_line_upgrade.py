"""A warehouse built before the credit price (SPEC 7) gets fct_invoice_lines' new columns
before its next build: the incremental model refuses a changed schema otherwise."""

import duckdb

from orchestration.warehouse.billing import add_later_invoice_line_columns
from orchestration.warehouse.models import relation


def _columns(con, name: str) -> list[str]:
    schema, table = name.split(".")
    return [
        r[0]
        for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE schema_name = ? AND table_name = ?"
            " ORDER BY column_index",
            [schema, table],
        ).fetchall()
    ]


def test_an_older_invoice_line_table_gains_the_credit_columns(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    name = relation("fct_invoice_lines")
    con.execute(f"CREATE SCHEMA {name.split('.')[0]}")
    con.execute(f"CREATE TABLE {name} (close_month VARCHAR, is_trial BOOLEAN)")
    con.execute(f"INSERT INTO {name} VALUES ('2026-10', false)")

    assert add_later_invoice_line_columns(con) == ["credit_quantity", "credit_price"]
    assert _columns(con, name) == ["close_month", "is_trial", "credit_quantity", "credit_price"]
    assert con.execute(f"SELECT credit_quantity FROM {name}").fetchall() == [(None,)]
    assert add_later_invoice_line_columns(con) == []  # the second time: nothing to add


def test_a_warehouse_without_invoices_is_left_alone(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    assert add_later_invoice_line_columns(con) == []
