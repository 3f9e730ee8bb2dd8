"""Run meterbook's Dagster jobs in this process, recorded in the workspace's Dagster instance.

The CLI and the end-to-end tests go through here, so every command is a Dagster run that shows
in the UI's run history, exactly as if finance had launched it there.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from orchestration.interrupts import (
    RunInterrupted,
    fail_orphaned_runs,
    run_tags,
    stop_requested,
    stopped,
)
from orchestration.workspace import Workspace

QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    success: bool
    error: str | None


def activate(ws: Workspace) -> Workspace:
    """Point this process (and the dbt subprocesses it starts) at the workspace."""
    ws.ensure()
    os.environ["METERBOOK_HOME"] = str(ws.home)
    os.environ["METERBOOK_WAREHOUSE"] = str(ws.warehouse_path)
    os.environ["DAGSTER_HOME"] = str(ws.dagster_home)
    dagster_yaml = ws.dagster_home / "dagster.yaml"
    if not dagster_yaml.exists():
        # no telemetry: this machine may have no network beyond the package registries
        dagster_yaml.write_text("telemetry:\n  enabled: false\n")
    return ws


def run_job(
    ws: Workspace, job_name: str, partition_key: str | None = None, verbose: bool = False
) -> RunOutcome:
    activate(ws)
    from dagster._core.errors import DagsterExecutionInterruptedError  # noqa: PLC0415

    from orchestration.definitions import build_definitions  # noqa: PLC0415

    defs = build_definitions(ws)
    job = defs.resolve_job_def(job_name)
    # dbt's own log lines go to stdout; keep stdout for what a command prints (JSON) and the
    # terminal for progress. The full log of the last run of each job stays in logs/.
    log_path = ws.home / "logs" / f"{job_name}.log"
    log_path.parent.mkdir(exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log, _instance(ws) as instance:
        fail_orphaned_runs(instance)
        quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(log)
        with quiet:
            try:
                result = job.execute_in_process(
                    instance=instance,
                    partition_key=partition_key,
                    run_config={} if verbose else QUIET,
                    raise_on_error=False,
                    tags=run_tags(),
                )
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
    return RunOutcome(result.run_id, True, None)


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

    from orchestration.defs.resources import LOCK_WAIT_SECONDS  # noqa: PLC0415
    from orchestration.locking import workspace_lock  # noqa: PLC0415

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
