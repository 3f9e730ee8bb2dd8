"""Run meterbook's Dagster jobs in this process, recorded in the workspace's Dagster instance.

The CLI and the end-to-end tests go through here, so every command is a Dagster run that shows
in the UI's run history, exactly as if finance had launched it there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from orchestration.instance import write_dagster_yaml
from orchestration.interrupts import (
    RunInterrupted,
    fail_orphaned_runs,
    run_tags,
    sigterm_kept,
    stop_requested,
    stopped,
)
from orchestration.workspace import PROJECT_ROOT, Workspace

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    error: str | None
    notes: tuple[str, ...] = ()  # what the run's assets said for the terminal (documents)


def activate(ws: Workspace) -> Workspace:
    """Point this process (and the dbt subprocesses it starts) at the workspace."""
    ws.ensure()
    os.environ["METERBOOK_HOME"] = str(ws.home)
    os.environ["METERBOOK_WAREHOUSE"] = str(ws.warehouse_path)
    os.environ["DAGSTER_HOME"] = str(ws.dagster_home)
    write_dagster_yaml(ws.dagster_home, ws.catalog_dir)  # SQLite, or settings.dagster_storage
    return ws


def run_job(
    ws: Workspace,
    job_name: str,
    partition_key: str | None = None,
    verbose: bool = False,
    on_start: Callable[[], None] | None = None,
    run_config: dict | None = None,
) -> RunOutcome:
    """Run a job as a run of the code location's job. `on_start` is called once the run's
    arguments are accepted, just before it starts (a refused month never announces a run).
    `run_config`: the job's own config (e.g. the credit note's ops config), as the Launchpad
    would send it."""
    activate(ws)
    from dagster._core.errors import DagsterExecutionInterruptedError  # noqa: PLC0415

    from orchestration.definitions import build_definitions  # noqa: PLC0415

    defs = build_definitions(ws)
    job = defs.resolve_job_def(job_name)
    # Dagster's loggers (stack traces included) and dbt's own lines would bury the command's
    # one-line error and its JSON output: unless verbose, both go to the log of the last run
    # of each job in logs/, and the terminal keeps what the command itself prints.
    log_path = ws.home / "logs" / f"{job_name}.log"
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log, _instance(ws) as instance:
        fail_orphaned_runs(instance)
        config = {**({} if verbose else QUIET), **(run_config or {})}
        tags = _run_tags(instance, job, partition_key, config)
        if on_start is not None:
            on_start()
        with _to_log(log, verbose):
            try:
                result = _execute(instance, job, config, tags)
            except (KeyboardInterrupt, DagsterExecutionInterruptedError) as exc:
                stopped()
                raise RunInterrupted(_stopped_message()) from exc
    if not result.success and _interrupted(result):
        stopped()
        raise RunInterrupted(_stopped_message(result.run_id))
    if stop_requested():  # the signal came too late to stop the run: it is complete
        stopped()
        raise RunInterrupted(f"stopped by a signal after Dagster run {result.run_id} finished")
    if not result.success:
        return RunOutcome(result.run_id, False, _first_error(result))
    failed = failed_checks(result.get_asset_check_evaluations())
    if failed:
        # a run whose reconciliation fails has not produced numbers anyone may use
        return RunOutcome(result.run_id, False, "reconciliation failed: " + "; ".join(failed))
    return RunOutcome(result.run_id, True, None, _notes(result))


def _notes(result) -> tuple[str, ...]:
    """The `documents` metadata of the run's materializations: PDFs printed, completed from
    earlier runs, or missing (and why), said on the terminal rather than only in the UI."""
    notes = []
    for event in result.all_events:
        if event.event_type_value != "ASSET_MATERIALIZATION":
            continue
        said = event.event_specific_data.materialization.metadata.get("documents")
        if said is not None:
            notes.append(f"documents: {said.value}")
    return tuple(notes)


def _execute(instance, job, run_config: dict, tags: dict[str, str]):
    """Run the job here, in this process, as a run of the code location's job.

    `execute_in_process` would record a run with no repository origin: the UI lists it under
    Runs but not on the job's page nor in its partitions. So the run is created as the UI
    creates it, with the origin of the job as workspace.yaml loads it, and then executed in
    this process; the jobs use the in-process executor (definitions.py), as in the UI."""
    from dagster._core.definitions.job_base import InMemoryJob  # noqa: PLC0415
    from dagster._core.execution.api import create_execution_plan, execute_run  # noqa: PLC0415

    in_memory = InMemoryJob(job)
    plan = create_execution_plan(in_memory, run_config=run_config, instance_ref=instance.get_ref())
    run = instance.create_run_for_job(
        job_def=job,
        execution_plan=plan,
        run_config=run_config,
        tags=tags,
        remote_job_origin=remote_job_origin(job.name),
    )
    with sigterm_kept():
        return execute_run(in_memory, run, instance, raise_on_error=False)


def _run_tags(instance, job, partition_key: str | None, run_config: dict) -> dict[str, str]:
    """The partition's tags and ours; a month outside the job's partitions in one line."""
    from dagster import DagsterUnknownPartitionError  # noqa: PLC0415
    from dagster._core.execution.execute_in_process import merge_run_tags  # noqa: PLC0415

    try:
        return merge_run_tags(job, partition_key, run_tags(), None, instance, run_config)
    except DagsterUnknownPartitionError:
        partitions = job.partitions_def
        first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
        raise PipelineError(
            f"{partition_key} is outside this workspace's {job.name} periods: they run from "
            f"{first} (the first subscription in the catalog) to {last}",
            run_id="",
        ) from None


def remote_job_origin(job_name: str):
    """The origin the UI gives the job: code location `meterbook` of workspace.yaml, loaded
    here without starting its server (only the names in it identify the job's runs)."""
    from dagster._core.definitions.repository_definition.valid_definitions import (  # noqa: PLC0415
        SINGLETON_REPOSITORY_NAME,  # the one repository of a code location built by Definitions
    )
    from dagster._core.remote_origin import RemoteRepositoryOrigin  # noqa: PLC0415
    from dagster._core.workspace.load import location_origins_from_yaml_paths  # noqa: PLC0415

    (location,) = location_origins_from_yaml_paths([str(PROJECT_ROOT / "workspace.yaml")])
    return RemoteRepositoryOrigin(location, SINGLETON_REPOSITORY_NAME).get_job_origin(job_name)


def _to_log(log, verbose: bool) -> contextlib.AbstractContextManager:
    """Send stdout and stderr (where Dagster's console logger and Python's warnings write) to
    the run's log file, or leave them on the terminal when the user asked to see everything."""
    if verbose:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(log))
    stack.enter_context(contextlib.redirect_stderr(log))
    return stack


def failed_checks(evaluations) -> list[str]:
    """One text per failed asset check of severity ERROR (a WARN check never fails a run)."""
    from dagster import AssetCheckSeverity  # noqa: PLC0415

    failed = []
    for evaluation in evaluations:
        if evaluation.passed or evaluation.severity != AssetCheckSeverity.ERROR:
            continue
        asset = "/".join(evaluation.asset_key.path)
        detail = _check_detail(evaluation.metadata)
        failed.append(
            f"check {evaluation.check_name} on {asset}" + (f" ({detail})" if detail else "")
        )
    return failed


def _check_detail(metadata) -> str:
    """The first non-empty metadata entry, shortened: enough to know where to look."""
    for name, entry in sorted((metadata or {}).items()):
        value = getattr(entry, "value", entry)
        if value in (None, "", [], {}, 0):
            continue
        text = f"{name}: {value}"
        return text if len(text) <= 200 else text[:197] + "..."
    return ""


def _instance(ws: Workspace):
    """The workspace's Dagster instance. Its first use creates the SQLite tables, and two
    commands started together on a new workspace would both create them; one at a time."""
    from dagster import DagsterInstance  # noqa: PLC0415 (import after DAGSTER_HOME is set)

    from orchestration.locking import (
        LOCK_WAIT_SECONDS,  # noqa: PLC0415
        workspace_lock,  # noqa: PLC0415
    )

    with workspace_lock(ws.home, "dagster-instance", LOCK_WAIT_SECONDS):
        return DagsterInstance.get()


def _stopped_message(run_id: str | None = None) -> str:
    run = f"Dagster run {run_id}" if run_id else "Dagster run"
    return (
        f"stopped by a signal; the {run} was marked failed and nothing half-done was kept: "
        "run the command again"
    )


def _interrupted(result) -> bool:
    """Whether the run failed because SIGINT or SIGTERM stopped it."""
    for event in result.all_events:
        error = getattr(event.event_specific_data, "error", None) if event.is_failure else None
        if error is not None and error.cls_name == "DagsterExecutionInterruptedError":
            return True
    return False


def _first_error(result) -> str:
    for event in result.all_events:
        if event.is_failure and event.event_specific_data is not None:
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                return _innermost(error)
    return "the run failed (see the Dagster UI for details)"


def _innermost(error) -> str:
    while getattr(error, "cause", None) is not None:
        error = error.cause
    return error.message.strip().splitlines()[-1] if error.message else "unknown error"


def close_period(ws: Workspace, close_month: str) -> RunOutcome:
    return _checked(run_job(ws, "month_end_close", close_month))


def finalize_period(ws: Workspace, close_month: str) -> RunOutcome:
    return _checked(run_job(ws, "finalize_invoices", close_month))


def recognize_revenue(ws: Workspace, month: str) -> RunOutcome:
    return _checked(run_job(ws, "recognize_revenue", month))


def issue_credit_note(ws: Workspace, config: dict) -> RunOutcome:
    """Runs the `credit_note` job with `config` (its issue step's config, as the UI's Launchpad
    takes it: invoice_id, reason, lines, refund, credit_note_id)."""
    run_config = {"ops": {"issue_credit_note_op": {"config": config}}}
    return _checked(run_job(ws, "credit_note", run_config=run_config))


def _checked(outcome: RunOutcome) -> RunOutcome:
    if not outcome.success:
        raise PipelineError(outcome.error or "run failed", outcome.run_id)
    return outcome


class PipelineError(RuntimeError):
    def __init__(self, message: str, run_id: str):
        super().__init__(message)
        self.run_id = run_id


def workspace_at(home: str | os.PathLike | None) -> Workspace:
    return Workspace.from_env(Path(home) if home else None)
