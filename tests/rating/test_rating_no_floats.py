"""No binary float near money: the rating code and models never cast to one."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON = [
    "orchestration/catalog/tables/billing.py",
    "orchestration/billing/periods.py",
    "orchestration/billing/segments.py",
    "orchestration/billing/windows.py",
    "orchestration/billing/invoice_json.py",
    "orchestration/billing/money.py",
]
SQL_GLOBS = [
    "dbt_project/models/intermediate/billing/*.sql",
    "dbt_project/models/marts/billing/*.sql",
    "dbt_project/macros/billing_*.sql",
    "dbt_project/macros/charge_model_*.sql",
]
PY_FLOAT = re.compile(r"\bfloat\s*\(|\bparse_float\b(?!\s*=\s*Decimal)")
SQL_FLOAT = re.compile(
    r"::\s*(double|float\d*|real)\b|\bas\s+(double|float\d*|real)\b|\breal\b|\bfloat\d*\b",
    re.IGNORECASE,
)


def sql_files() -> list[Path]:
    return sorted(p for pattern in SQL_GLOBS for p in ROOT.glob(pattern))


def test_the_scan_sees_the_rating_code():
    names = {p.name for p in sql_files()}
    assert {
        "int_usage_lines_rated.sql",
        "fct_invoice_lines.sql",
        "charge_model_graduated.sql",
    } <= names


@pytest.mark.parametrize("path", PYTHON)
def test_python_rating_code_has_no_float(path):
    text = (ROOT / path).read_text()
    found = [line for line in text.splitlines() if PY_FLOAT.search(line)]
    assert not found, f"{path}: {found}"


def test_rating_sql_has_no_float():
    found = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in sql_files()
        for n, line in enumerate(p.read_text().splitlines(), start=1)
        if SQL_FLOAT.search(line)
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("bad", ["cast(x as double)", "x::DOUBLE", "cast(x AS real)", "x::float8"])
def test_the_pattern_catches_floats(bad):
    assert SQL_FLOAT.search(bad)
