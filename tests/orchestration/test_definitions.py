"""The Dagster code location loads, and its jobs, partitions and checks are what finance sees."""

import pytest
from dagster import AssetKey

from orchestration.defs.partitions import daily_usage, monthly_billing, parse_month
from orchestration.defs.transform.assets import dbt_vars
from orchestration.pipeline import activate
from orchestration.workspace import Workspace


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    ws = activate(Workspace(tmp_path_factory.mktemp("home")))
    from orchestration.definitions import build_definitions

    return build_definitions(ws)


def test_jobs_finance_launches_have_descriptions(defs):
    for name in ("month_end_close", "finalize_invoices", "daily_usage_refresh", "stripe_sync"):
        job = defs.resolve_job_def(name)
        assert job.description, name
    assert defs.resolve_job_def("month_end_close").partitions_def == monthly_billing
    assert defs.resolve_job_def("daily_usage_refresh").partitions_def == daily_usage


def test_graph_connects_python_sources_to_dbt(defs):
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    for key in ("fct_event_fates", "fct_invoices", "invoice_documents", "finalized_invoices"):
        assert AssetKey(key) in keys, key
    raw = AssetKey(["meterbook_raw", "raw_events"])
    assert AssetKey("stg_meterbook__raw_events") in graph.get(raw).child_keys
    windows = AssetKey(["meterbook_billing", "meter_windows"])
    assert AssetKey("int_events_metered") in graph.get(windows).parent_keys


def test_every_asset_has_a_description(defs):
    graph = defs.resolve_asset_graph()
    missing = [
        k.to_user_string()
        for k in graph.get_all_asset_keys()
        if graph.get(k).is_materializable and not graph.get(k).description
    ]
    assert not missing


def test_reconciliation_checks_are_attached(defs):
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert {
        "fates_reconcile",
        "no_key_billed_twice",
        "invoices_add_up",
        "events_in_one_line",
    } <= checks


def test_dbt_vars_are_json_and_empty_without_partition():
    assert dbt_vars(None) == []
    assert dbt_vars({"close_month": "2026-10"}) == ["--vars", '{"close_month": "2026-10"}']


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "26-10", "2026/10", "", "2026-10-01"])
def test_parse_month_rejects(bad):
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_month(bad)
