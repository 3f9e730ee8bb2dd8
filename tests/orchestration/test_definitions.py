"""The Dagster code location loads, and its jobs, partitions and checks are what finance sees."""

import os
import random
import re
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from dagster import AssetKey, build_schedule_context

from orchestration.billing.month import BillingMonth
from orchestration.catalog import load_catalog
from orchestration.defs.dbt import runner
from orchestration.defs.dbt.project import build_models
from orchestration.defs.dbt.runner import PARTIAL_PARSE, prune_stale_targets
from orchestration.defs.partitions import first_month
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.demo.generate import SEED, demo_customers, write_catalog
from orchestration.pipeline import activate
from orchestration.sql import connect
from orchestration.workspace import Workspace, now_utc


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as env:
        for name in ("DAGSTER_HOME", "METERBOOK_HOME", "METERBOOK_WAREHOUSE"):
            env.setenv(name, "")  # activate() exports them: undone after this module
        ws = activate(Workspace(tmp_path_factory.mktemp("home")))
        write_catalog(ws.catalog_dir, demo_customers(random.Random(SEED)))
        yield ws


@pytest.fixture(scope="module")
def defs(home):
    from orchestration.definitions import build_definitions

    return build_definitions(home)


def test_jobs_finance_launches_have_descriptions(defs):
    for name in ("month_end_close", "finalize_invoices", "daily_usage_refresh", "stripe_sync"):
        job = defs.resolve_job_def(name)
        assert job.description, name


def test_partitions_start_at_the_first_subscription_month(defs, home):
    first = min(s.start_date for s in load_catalog(home.catalog_dir).subscriptions)
    assert first.replace(day=1) < now_utc().date().replace(day=1)  # else the test proves little
    monthly = defs.resolve_job_def("month_end_close").partitions_def
    daily = defs.resolve_job_def("daily_usage_refresh").partitions_def
    assert monthly.get_first_partition_key() == str(BillingMonth.of(first))
    assert daily.get_first_partition_key() == first.replace(day=1).isoformat()
    graph = defs.resolve_asset_graph()
    partitioned = {graph.get(k).partitions_def for k in graph.get_all_asset_keys()} - {None}
    assert partitioned == {monthly, daily}  # no asset kept the placeholders of import time


def test_late_days_before_the_first_subscription_request_no_run(defs, home):
    from types import SimpleNamespace

    from dagster import MetadataValue, build_sensor_context

    from orchestration.defs.ingest.assets import backfill_touched_days

    first = defs.resolve_job_def("daily_usage_refresh").partitions_def.get_first_partition_key()
    before = (datetime.fromisoformat(first) - timedelta(days=1)).date().isoformat()
    metadata = {"event_days": MetadataValue.json([before, first])}
    event = SimpleNamespace(
        run_id="r1",
        dagster_event=SimpleNamespace(
            event_specific_data=SimpleNamespace(materialization=SimpleNamespace(metadata=metadata))
        ),
    )
    context = build_sensor_context(repository_def=defs.get_repository_def())
    requests = list(backfill_touched_days._asset_materialization_fn(context, event))
    assert [r.partition_key for r in requests] == [first]


def test_without_a_valid_catalog_partitions_start_this_month(tmp_path):
    ws = Workspace(tmp_path)
    assert first_month(ws) == BillingMonth.of(now_utc())  # no catalog folder
    ws.catalog_dir.mkdir()
    (ws.catalog_dir / "pricing.yaml").write_text("plans: [", encoding="utf-8")
    assert first_month(ws) == BillingMonth.of(now_utc())


def _descriptions(defs) -> dict[str, str | None]:
    graph = defs.resolve_asset_graph()
    found = {
        f"asset {k.to_user_string()}": graph.get(k).description
        for k in graph.get_all_asset_keys()
        if graph.get(k).is_materializable
    }
    for key in graph.asset_check_keys:
        found[f"check {key.name}"] = graph.get_check_spec(key).description
    for job in defs.resolve_all_job_defs():
        if not job.name.startswith("__"):
            found[f"job {job.name}"] = job.description
    found.update({f"schedule {s.name}": s.description for s in defs.schedules})
    found.update({f"sensor {s.name}": s.description for s in defs.sensors})
    return found


def test_descriptions_speak_to_finance_not_of_internals(defs):
    descriptions = _descriptions(defs)
    assert len(descriptions) > 20
    internal = re.compile(r"\bSPEC\b|\bvar |\bvars?\b.*close_month")
    leaking = {name: text for name, text in descriptions.items() if internal.search(text or "")}
    assert not leaking
    undescribed = [name for name, text in descriptions.items() if not (text or "").strip()]
    assert not undescribed


def test_the_loader_finds_every_job_schedule_and_sensor_the_stages_declare(defs):
    jobs = {j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")}
    assert jobs == {
        "ingest_landing_files",
        "daily_usage_refresh",
        "month_end_close",
        "finalize_invoices",
        "recognize_revenue",
        "stripe_sync",
        "stripe_payment_status",
        "credit_note",
        "dunning",
        "price_backtest",
    }
    assert {s.name for s in defs.schedules} == {
        "nightly_refresh",
        "stripe_payment_status_schedule",
        "dunning_schedule",
    }
    assert {s.name for s in defs.sensors} == {"landing_files_sensor", "backfill_touched_days"}
    checks = {k.name for k in defs.resolve_asset_graph().asset_check_keys}
    assert {
        "fates_reconcile",
        "invoices_add_up",
        "events_in_one_line",
        "ledger_consistent",
    } <= checks


def test_re_rating_finalized_months_is_a_step_of_the_close(defs):
    close = defs.resolve_job_def("month_end_close")
    steps = {node.name for node in close.graph.node_defs}
    assert {"rerated_finalized_months", "billing_windows", "billing_models"} <= steps


def test_graph_connects_python_sources_to_dbt(defs):
    graph = defs.resolve_asset_graph()
    keys = graph.get_all_asset_keys()
    for key in ("fct_event_fates", "fct_invoices", "invoice_documents", "finalized_invoices"):
        assert AssetKey(key) in keys, key
    raw = AssetKey(["meterbook_raw", "raw_events"])
    assert AssetKey("stg_meterbook__raw_events") in graph.get(raw).child_keys
    windows = AssetKey(["meterbook_billing", "meter_windows"])
    rerate = AssetKey("rerated_finalized_months")  # its own step, after metering
    assert rerate in graph.get(windows).parent_keys
    assert AssetKey("int_events_metered") in graph.get(rerate).parent_keys


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


class _Invocation:
    """A dbt invocation that wrote its artifacts to `target_path` and streams `events`."""

    def __init__(self, target_path, fail):
        self.target_path, self.fail = target_path, fail
        target_path.mkdir(exist_ok=True)
        (target_path / "run_results.json").write_text("{}")
        (target_path / PARTIAL_PARSE).write_bytes(b"the parse of this build")

    def stream(self):
        yield "materialization"
        if self.fail:
            raise RuntimeError("dbt build failed")


def _raw_columns(warehouse):
    con = connect(warehouse)
    try:
        return {
            row[0]
            for row in con.execute(
                "SELECT column_name FROM duckdb_columns() "
                "WHERE schema_name = 'meterbook_raw' AND table_name = 'raw_events'"
            ).fetchall()
        }
    finally:
        con.close()


class _Dbt:
    """Records its arguments, the partition it was given, the parse it started from and the
    raw_events columns dbt would have found."""

    def __init__(self, warehouse, fail):
        self.warehouse, self.fail = warehouse, fail
        self.args = self.raw_columns = self.target = self.env = self.seeded = None

    def cli(self, args, context, target_path):  # noqa: ARG002 (DbtCliResource.cli's signature)
        self.args, self.raw_columns = args, _raw_columns(self.warehouse)
        self.env = {k: v for k, v in os.environ.items() if k.startswith("METERBOOK_")}
        seeded = target_path / PARTIAL_PARSE
        self.seeded = seeded.read_bytes() if seeded.exists() else None
        self.target = target_path
        return _Invocation(target_path, self.fail)


class _Meterbook:
    def __init__(self, warehouse):
        self.warehouse = warehouse

    @contextmanager
    def exclusive(self):
        yield self.warehouse


def _fakes(tmp_path, fail):
    warehouse = tmp_path / "warehouse.duckdb"
    return _Dbt(warehouse, fail), _Meterbook(warehouse)


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    """The fake dbt and workspace, whose builds share their parse in the test's own folder:
    in the project's, every warehouse of the checkout could adopt it, and a real parse shared
    there by an earlier build would seed this test's first one."""
    monkeypatch.setattr(runner, "SHARED_PARSE_UNDER", tmp_path / "shared")
    return lambda fail: _fakes(tmp_path, fail)


def test_a_successful_build_gets_its_partition_and_removes_its_dbt_artifacts_folder(
    fakes, tmp_path
):
    dbt, meterbook = fakes(fail=False)
    events = list(build_models(None, dbt, meterbook, {"close_month": "2026-10"}, under=tmp_path))
    assert events == ["materialization"]
    assert dbt.args == ["build", "--exclude-resource-type", "unit_test"]  # unit tests: the suite's
    assert dbt.env["METERBOOK_CLOSE_MONTH"] == "2026-10"
    assert dbt.env["METERBOOK_MIN_DATE"] == "1970-01-01"
    assert "METERBOOK_CLOSE_MONTH" not in os.environ  # only for dbt's process
    assert dbt.target.parent == tmp_path and not dbt.target.exists()


def test_a_build_starts_from_the_parse_of_the_build_before_it(fakes, tmp_path):
    dbt, meterbook = fakes(fail=False)
    list(build_models(None, dbt, meterbook, None, under=tmp_path))
    assert dbt.seeded is None  # the first build of this warehouse
    list(build_models(None, dbt, meterbook, {"min_date": "2026-10-02"}, under=tmp_path))
    assert dbt.seeded == b"the parse of this build"


def test_a_failed_build_keeps_its_dbt_artifacts_for_inspection(fakes, tmp_path):
    dbt, meterbook = fakes(fail=True)
    with pytest.raises(RuntimeError, match="dbt build failed"):
        list(build_models(None, dbt, meterbook, None, under=tmp_path))
    assert (dbt.target / "run_results.json").exists()
    assert not (tmp_path / "dbt" / PARTIAL_PARSE).exists()  # only a success's parse is kept


# raw_events as ingests before file_seq wrote it (rows name their file by its sha256)
_OLD_RAW_TABLES = """
CREATE SCHEMA meterbook_raw;
CREATE TABLE meterbook_raw.landing_files (
    file_sha256 VARCHAR PRIMARY KEY, path VARCHAR NOT NULL, format VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL, file_seq BIGINT NOT NULL UNIQUE, ingested_at TIMESTAMPTZ NOT NULL,
    lines_read BIGINT NOT NULL, error VARCHAR);
INSERT INTO meterbook_raw.landing_files
VALUES ('sha-a', 'a.jsonl', 'jsonl', 100, 1, '2026-11-01 00:00Z', 1, NULL);
CREATE TABLE meterbook_raw.raw_events (
    read_seq BIGINT NOT NULL, file_sha256 VARCHAR NOT NULL, path VARCHAR NOT NULL,
    line_no BIGINT NOT NULL, event_id VARCHAR, customer_id VARCHAR, event_name VARCHAR,
    event_ts TIMESTAMPTZ, properties JSON, source VARCHAR, parse_reason VARCHAR,
    raw_line VARCHAR, ingested_at TIMESTAMPTZ NOT NULL);
INSERT INTO meterbook_raw.raw_events VALUES (2, 'sha-a', 'a.jsonl', 1, 'e1', 'acme', 'x',
    '2026-10-02 10:00Z', '{}', NULL, NULL, NULL, '2026-11-01 00:00Z');
"""


def test_a_build_without_an_ingest_first_finds_the_raw_tables_upgraded(fakes, tmp_path):
    """Re-materializing usage alone after an upgrade: dbt must not meet the old columns."""
    dbt, meterbook = fakes(fail=False)
    con = connect(meterbook.warehouse)
    con.execute(_OLD_RAW_TABLES)
    con.close()
    list(build_models(None, dbt, meterbook, None, under=tmp_path))
    assert "file_seq" in dbt.raw_columns and "file_sha256" not in dbt.raw_columns
    con = connect(meterbook.warehouse)
    rows = con.execute("SELECT read_seq, file_seq, event_id FROM meterbook_raw.raw_events")
    assert rows.fetchall() == [(2, 1, "e1")]
    con.close()


def test_a_build_before_any_ingest_finds_empty_raw_tables(fakes, tmp_path):
    dbt, meterbook = fakes(fail=False)
    list(build_models(None, dbt, meterbook, None, under=tmp_path))
    assert {"read_seq", "file_seq", "properties"} <= dbt.raw_columns


def _aged(folder, days):
    folder.mkdir()
    (folder / "run_results.json").write_text("{}")
    then = time.time() - days * 86400
    os.utime(folder, (then, then))
    return folder


def test_only_old_invocation_folders_are_pruned(tmp_path):
    old = [
        _aged(tmp_path / "daily_usage_models-abc1234-def5678", 15),
        _aged(tmp_path / "run_dbt-x1y2z3", 30),
        _aged(tmp_path / "parse-k9", 20),
    ]
    kept = [
        _aged(tmp_path / "billing_models-abc1234-def5678", 13),  # failed, still recent
        _aged(tmp_path / "compiled", 30),  # dbt's own
        _aged(tmp_path / "run", 30),
        _aged(tmp_path / "my-notes", 30),  # not named like an invocation
    ]
    assert prune_stale_targets(tmp_path, days=14) == len(old)
    assert not any(f.exists() for f in old)
    assert all(f.exists() for f in kept)


@pytest.mark.parametrize("bad", ["2026-1", "26-10", "2026/10", "", "2026-10-01"])
def test_parse_month_rejects(bad):
    with pytest.raises(ValueError, match="YYYY-MM"):
        BillingMonth.parse(bad)


def test_parse_month_says_which_part_is_out_of_range():
    with pytest.raises(ValueError, match="month 13 is out of range"):
        BillingMonth.parse("2026-13")


def test_a_failed_run_prints_nothing_and_gives_one_line(home, capfd):
    """Dagster's stack traces go to the run's log file; the command prints the one line."""
    from orchestration.pipeline import run_job

    month = str(first_month(home))
    outcome = run_job(home, "finalize_invoices", month)  # no draft invoices yet
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert not outcome.success and outcome.error and "\n" not in outcome.error
    assert "no draft invoices" in outcome.error
    log = (home.home / "logs" / "finalize_invoices.log").read_text(encoding="utf-8")
    assert "Stack Trace" in log or "Traceback" in log


def _nightly_requests(home, tick: datetime) -> list[tuple[str | None, str]]:
    from orchestration.defs.usage.jobs import nightly_refresh

    context = build_schedule_context(
        resources={"meterbook": MeterbookWorkspace(home=str(home.home))},
        scheduled_execution_time=tick,
    )
    return [(r.job_name, r.partition_key) for r in nightly_refresh(context)]


def test_the_nightly_refresh_asks_for_no_partition_before_the_first_subscription(home):
    first = first_month(home)
    on_its_first_day = datetime.combine(first.first_day, datetime.min.time(), UTC)
    assert _nightly_requests(home, on_its_first_day.replace(hour=1, minute=30)) == [
        ("month_end_close", str(first))  # not the day before, nor the month before
    ]
    later = on_its_first_day + timedelta(days=40)
    assert (None, (later - timedelta(days=1)).date().isoformat()) in _nightly_requests(home, later)


def test_revenue_is_built_after_finalization_and_the_wallet_ledger(defs):
    graph = defs.resolve_asset_graph()
    lines = graph.get(AssetKey("int_revenue_lines"))
    assert AssetKey("finalized_invoices") in lines.parent_keys
    movements = graph.get(AssetKey("int_revenue_credit_movements"))
    assert AssetKey("wallet_ledger") in movements.parent_keys
    job = defs.resolve_job_def("recognize_revenue")
    assert job.partitions_def is not None  # one calendar month per run
    checks = {k.name for k in graph.asset_check_keys}
    assert {
        "schedule_sums_to_lines",
        "rollforward_matches_lines",
        "deferred_never_negative",
        "journal_balances",
    } <= checks
