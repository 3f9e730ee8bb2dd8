"""The dbt argument list is a pure function of the command, selection and partition vars."""

from __future__ import annotations

import json

import pytest

from orchestration.defs.transform.dbt_runner import dbt_args


def test_build_without_partition_keeps_project_defaults():
    assert dbt_args("build", None, {}) == ["build"]


def test_select_and_vars():
    args = dbt_args("build", "tag:usage", {"min_date": "2026-10-02", "max_date": "2026-10-03"})
    assert args[:3] == ["build", "--select", "tag:usage"]
    assert args[3] == "--vars"
    assert json.loads(args[4]) == {"min_date": "2026-10-02", "max_date": "2026-10-03"}


def test_vars_are_rendered_deterministically():
    a = dbt_args("run", None, {"max_date": "2026-10-03", "min_date": "2026-10-02"})
    b = dbt_args("run", None, {"min_date": "2026-10-02", "max_date": "2026-10-03"})
    assert a == b


def test_close_month():
    assert dbt_args("run", "x", {"close_month": "2026-10"})[-1] == '{"close_month": "2026-10"}'
    assert dbt_args("run", None, {"close_month": None}) == [
        "run",
        "--vars",
        '{"close_month": null}',
    ]


@pytest.mark.parametrize(
    "vars",
    [
        {"min_date": "2026-10-2"},
        {"min_date": "2026-10-02'; drop table x; --"},
        {"close_month": "2026-13"},
        {"close_month": "2026-10-01"},
        {"close_month": 202610},
        {"min_date": "2026-10-03", "max_date": "2026-10-03"},  # [min, max) would be empty
        {"month": "2026-10"},
    ],
)
def test_bad_vars_are_refused(vars):
    with pytest.raises(ValueError):
        dbt_args("build", None, vars)


def test_unknown_command_is_refused():
    with pytest.raises(ValueError, match="unknown dbt command"):
        dbt_args("drop", None, {})
