"""Landing files -> raw events, and the sensor that backfills the days late files touch."""

import json
from collections.abc import Iterator
from contextlib import contextmanager

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    asset_sensor,
    multi_asset,
    sensor,
)

from orchestration.catalog import CatalogError
from orchestration.catalog.models import Settings
from orchestration.defs.dbt.project import source_keys
from orchestration.defs.dbt.spark_stage import ingest_session
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.ingest.ingest import pending_files, run_ingest
from orchestration.ingest.refresh_status import record_ingest
from orchestration.ingest.spark_read import SparkReading
from orchestration.locking import WorkspaceLocked
from orchestration.warehouse.lake import claim_lake
from orchestration.workspace import now_utc

RAW_EVENTS = AssetKey(["meterbook_raw", "raw_events"])
_DESCRIPTIONS = {
    "raw_events": "Every usage record received in landing/events/, read once per file "
    "content, with its file, line and what was wrong with it if it could not be read. Updated "
    "by every ingest: run the ingest job (or let the landing-files sensor do it) when new "
    "files arrive; the month-end close runs it first too.",
    "repeated_events": "Usage records sent more than once (same customer and event id), kept "
    "so that each is billed at most once. Updated by every ingest.",
}


@multi_asset(
    name="raw_events",
    specs=[
        AssetSpec(
            key,
            group_name="ingest",
            description=_DESCRIPTIONS.get(
                key.path[-1],
                "The usage files received and every name they arrived under. Updated by every "
                "ingest.",
            ),
            kinds={"duckdb", "python"},
        )
        for key in source_keys("meterbook_raw", always=("raw_events",))
    ],
)
def raw_events(context: AssetExecutionContext, meterbook: MeterbookWorkspace):
    ws = meterbook.workspace.ensure()
    settings = meterbook.catalog().settings
    spark_used: dict[str, str] = {}  # where the files were read, when Spark read any
    with meterbook.warehouse() as con, _spark_reading(ws, settings, spark_used) as spark:
        result = run_ingest(
            con,
            ws.landing_dir,
            now_utc(),
            max_line_bytes=settings.max_line_bytes,
            max_decompressed_bytes=settings.max_decompressed_bytes,
            spark=spark,
        )
        totals = con.execute(
            "SELECT count(*), count(DISTINCT file_seq) FROM meterbook_raw.raw_events"
        ).fetchone()
    status = record_ingest(
        ws.home,
        ws.landing_dir,
        context.run_id,
        (f.path for f in result.files),
        result.lines_read,
        copies=result.skipped_copies,
    )
    for f in result.files:
        context.log.info(
            f"ingested {f.path}: {f.lines_read} lines" + (f" ({f.error})" if f.error else "")
        )
    yield MaterializeResult(
        asset_key=RAW_EVENTS,
        metadata={
            "new_files": len(result.files),
            "new_lines_read": result.lines_read,
            "copies_ignored": len(result.skipped_copies),
            "read_by": settings.warehouse,  # spark: Spark's tasks read the new files
            **spark_used,
            "event_days": MetadataValue.json([d.isoformat() for d in result.event_days]),
            "dagster/row_count": totals[0],
            "files_total": totals[1],
            "files": MetadataValue.md(_files_table(result.files)),
            "oldest_arrival": status["oldest_arrival"] or "no new file",
        },
    )
    for key in context.selected_asset_keys - {RAW_EVENTS}:
        yield MaterializeResult(asset_key=key)


@contextmanager
def _spark_reading(ws, settings: Settings, used: dict) -> Iterator[SparkReading | None]:
    """With settings.warehouse spark, Spark's executors read the landing files (issue 29), on
    a session started only when a file is to be read (`used` then says which Spark: the Spark
    Connect server's address, or the master of a session of this process); a Spark Connect
    session is ended with the ingest (a local one is kept for the process's next)."""
    if settings.warehouse != "spark":
        yield None
        return
    lake = claim_lake(ws.lake_dir, ws.home)
    opened = {}  # the session, and its Spark Connect address (None: a session of this process)

    def session():
        if not opened:
            opened["session"], opened["remote"] = ingest_session(ws.home / "spark" / "warehouse")
            used["read_on_spark"] = opened["remote"] or opened["session"].sparkContext.master
        return opened["session"]

    try:
        yield SparkReading(session, lake)
    finally:
        if opened.get("remote"):
            opened["session"].stop()


def _files_table(files) -> str:
    if not files:
        return "no new files"
    rows = [f"| {f.path} | {f.format} | {f.lines_read} | {f.error or ''} |" for f in files[:50]]
    return "\n".join(["| file | format | lines | error |", "|---|---|---|---|", *rows])


@sensor(
    job_name="ingest_landing_files",
    # the micro-batch loop's default cycle (settings.events_api.follow_seconds, which
    # `meterbook follow` reads; a sensor's interval is fixed where it is defined)
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.STOPPED,
    description=(
        "Counts usage as it arrives: starts an ingest when new files appear in "
        "landing/events/, once they have not changed for the catalog's landing_settle_seconds "
        "(a sender may still be writing them; the events API's files in api/ are whole when "
        "they appear and go at once), then entitlements and alerts are refreshed. Turn it on "
        "to see usage before the close; `meterbook follow` does the same without the daemon."
    ),
)
def landing_files_sensor(context: SensorEvaluationContext, meterbook: MeterbookWorkspace):
    ws = meterbook.workspace
    if not ws.warehouse_path.exists():
        return SkipReason("no warehouse yet: run a close or an ingest once")
    settle = _settle_seconds(context, meterbook)
    try:
        with meterbook.reader(wait_seconds=0) as con:  # a sensor tick must not wait on a close
            pending = pending_files(con, ws.landing_dir, settle_seconds=settle)
    except WorkspaceLocked:
        return SkipReason("the workspace is busy (a run holds it); checking again next tick")
    if not pending:
        return SkipReason("no new landing files")
    names = sorted(p.as_posix() for p in pending)
    return RunRequest(run_key=json.dumps(names), tags={"meterbook/new_files": str(len(names))})


def _settle_seconds(context: SensorEvaluationContext, meterbook: MeterbookWorkspace) -> int:
    """How old a landing file must be before the sensor starts an ingest for it. A catalog that
    does not load leaves the default: the run the sensor starts then fails on the catalog,
    where the mistake is reported (an explicit ingest reads every file, settled or not)."""
    try:
        return meterbook.catalog().settings.landing_settle_seconds
    except CatalogError as exc:
        context.log.warning(f"the catalog does not load, waiting the default settle time: {exc}")
        return Settings().landing_settle_seconds


@asset_sensor(
    asset_key=RAW_EVENTS,
    job_name="daily_usage_refresh",
    default_status=DefaultSensorStatus.STOPPED,
    description=(
        "Keeps the daily usage right when usage arrives late: after each ingest, refreshes "
        "the days its events fall on. Turn it on together with the landing-files sensor."
    ),
)
def backfill_touched_days(context: SensorEvaluationContext, asset_event):
    materialization = asset_event.dagster_event.event_specific_data.materialization
    days = materialization.metadata.get("event_days")
    # a day before the first subscription (or a clock far ahead) has no partition to refresh
    partitions = context.repository_def.get_job("daily_usage_refresh").partitions_def
    for day in days.value if days else []:
        if partitions.has_partition_key(day):
            yield RunRequest(run_key=f"{asset_event.run_id}:{day}", partition_key=day)
        else:
            context.log.info(f"no daily partition {day}: nothing to refresh for it")
