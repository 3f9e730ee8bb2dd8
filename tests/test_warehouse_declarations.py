"""Every warehouse table Python writes is declared once, in orchestration/warehouse/ (one module
per schema), and "does this table exist" is asked one way (warehouse/tables.py)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = [ROOT / "orchestration", ROOT / "integrations"]
# meterbook_catalog is rewritten whole from catalog/*.yaml by the catalog's own table writers
DECLARING = ("orchestration/warehouse/", "orchestration/catalog/tables/")
CREATE = re.compile(r"CREATE\s+(OR\s+REPLACE\s+)?TABLE", re.IGNORECASE)
EXISTS = re.compile(r"duckdb_tables\(\)|information_schema\.tables", re.IGNORECASE)


def _sources() -> list[tuple[str, str]]:
    return [
        (path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8"))
        for folder in CODE
        for path in sorted(folder.rglob("*.py"))
    ]


def test_dbt_macros_create_no_python_tables():
    macros = sorted((ROOT / "dbt_project" / "macros").glob("*.sql"))
    assert macros, "no dbt macros found: has dbt_project/macros moved?"
    creating = [m.name for m in macros if CREATE.search(m.read_text(encoding="utf-8"))]
    # the Spark side of the hand-off attaches the lake's Parquet folders as tables in Spark,
    # not in the DuckDB warehouse; what they hold is declared where it is written (lake.py)
    creating = [name for name in creating if name != "spark_handoff.sql"]
    assert creating == [], (
        f"tables declared in dbt macros, not orchestration/warehouse/: {creating}"
    )


def test_tables_are_created_only_in_the_warehouse_modules():
    outside = [
        name for name, text in _sources() if CREATE.search(text) and not name.startswith(DECLARING)
    ]
    assert outside == [], f"CREATE TABLE outside orchestration/warehouse/: {outside}"


def test_table_existence_is_asked_only_by_table_exists():
    askers = [name for name, text in _sources() if EXISTS.search(text)]
    assert askers == ["orchestration/warehouse/tables.py"], askers


def test_each_schema_is_declared_by_one_module():
    declared: dict[str, set[str]] = {}
    for name, text in _sources():
        if name.startswith("orchestration/warehouse/"):
            for schema in re.findall(r"CREATE TABLE IF NOT EXISTS (meterbook_\w+)\.", text):
                declared.setdefault(schema, set()).add(name)
    assert declared, "no declarations found: has orchestration/warehouse/ moved?"
    assert {s: m for s, m in declared.items() if len(m) > 1} == {}
