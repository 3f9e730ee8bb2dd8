"""The Dagster code location loads, and its jobs, partitions and checks are what finance sees."""

from contextlib import nullcontext

import pytest
from dagster import AssetKey

from orchestration.defs.partitions import daily_usage, monthly_billing, parse_month
from orchestration.defs.transform.assets import _build, dbt_vars
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
        "metering_fates_reconcile",  # the dbt test, shown in Dagster as a check
        "no_key_billed_twice",
        "invoices_add_up",
        "events_in_one_line",
    } <= checks


def test_dbt_vars_are_json_and_empty_without_partition():
    assert dbt_vars(None) == []
    assert dbt_vars({"close_month": "2026-10"}) == ["--vars", '{"close_month": "2026-10"}']


class _Invocation:
    """A dbt invocation that wrote its artifacts to `target_path` and streams `events`."""

    def __init__(self, target_path, fail):
        self.target_path, self.fail = target_path, fail
        target_path.mkdir()
        (target_path / "run_results.json").write_text("{}")

    def stream(self):
        yield "materialization"
        if self.fail:
            raise RuntimeError("dbt build failed")


class _Dbt:
    def __init__(self, invocation):
        self.invocation, self.args = invocation, None

    def cli(self, args, context):  # noqa: ARG002 (DbtCliResource.cli's signature)
        self.args = args
        return self.invocation


class _Meterbook:
    def exclusive(self):
        return nullcontext()


def test_a_successful_build_removes_its_dbt_artifacts_folder(tmp_path):
    dbt = _Dbt(_Invocation(tmp_path / "usage_models-abc", fail=False))
    events = list(_build(None, dbt, _Meterbook(), {"close_month": "2026-10"}))
    assert events == ["materialization"]
    assert dbt.args == ["build", "--vars", '{"close_month": "2026-10"}']
    assert not (tmp_path / "usage_models-abc").exists()


def test_a_failed_build_keeps_its_dbt_artifacts_for_inspection(tmp_path):
    dbt = _Dbt(_Invocation(tmp_path / "usage_models-abc", fail=True))
    with pytest.raises(RuntimeError, match="dbt build failed"):
        list(_build(None, dbt, _Meterbook(), None))
    assert (tmp_path / "usage_models-abc" / "run_results.json").exists()


@pytest.mark.parametrize("bad", ["2026-13", "2026-1", "26-10", "2026/10", "", "2026-10-01"])
def test_parse_month_rejects(bad):
    with pytest.raises(ValueError, match="YYYY-MM"):
        parse_month(bad)
