"""settings.anomaly_pct (SPEC 10): a percentage, 50 unless set; a mistake is named with its
file, line and path before anything runs."""

from __future__ import annotations

from decimal import Decimal

import pytest
from catalog_texts import issues_of, load_text


def issues(tmp_path, text: str) -> list[str]:
    """The issues, with file names relative to the test's folder (the catalog folder)."""
    return [issue.removeprefix(f"{tmp_path.name}/") for issue in issues_of(tmp_path, text)]


def test_fifty_percent_unless_set(tmp_path):
    settings = load_text(tmp_path, "settings: {default_currency: USD}\n").settings
    assert settings.anomaly_pct == Decimal(50) and isinstance(settings.anomaly_pct, Decimal)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("25", Decimal(25)), ('"12.5"', Decimal("12.5")), ("0.0001", Decimal("0.0001")),
     ("10000", Decimal(10_000))],
)  # fmt: skip
def test_a_percentage_as_written(tmp_path, text, expected):
    settings = load_text(tmp_path, f"settings:\n  anomaly_pct: {text}\n").settings
    assert settings.anomaly_pct == expected and isinstance(settings.anomaly_pct, Decimal)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("0", "Input should be greater than 0"),
        ("-5", "Input should be greater than 0"),
        ("10001", "Input should be less than or equal to 10000"),
        ("0.00001", "Decimal input should have no more than 4 decimal places"),
        ('"50%"', "anomaly_pct is a number of percent, like 50 for 50%; not '50%'"),
        ("true", "anomaly_pct is a number of percent, like 50 for 50%; not True"),
        ("fifty", "Input should be a valid decimal"),
        (".nan", "Input should be a finite number"),
    ],
)
def test_a_bad_percentage_is_named(tmp_path, text, problem):
    assert issues(tmp_path, f"settings:\n  anomaly_pct: {text}\n") == [
        f"catalog.yaml:2: settings.anomaly_pct: {problem}"
    ]
