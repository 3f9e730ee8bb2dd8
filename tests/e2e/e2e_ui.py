"""Driving `dagster dev` the way a person at the Dagster UI does, through its GraphQL API.

`drive_the_ui(home)` takes a workspace the CLI has closed, starts `dagster dev -w
workspace.yaml` on 127.0.0.1 for it (on the workspace's own Dagster instance, as `meterbook ui`
does), waits for the code location, reads where the CLI's close shows (its run's repository
origin, the job's runs, and in headless Chromium the job's page and the invoices' partition:
e2e_browser.py), then launches `month_end_close` for the period (what the UI's "Launch run"
button sends), waits for the run, stops the server (its whole process group) and reads the
invoices. It returns what it saw; test_e2e_dagster_ui.py asserts on it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from e2e_browser import BrowserOutcome, look_at_the_ui
from e2e_helpers import (
    NOW,
    PERIOD,
    REPO,
    RUN_TIMEOUT,
    Finished,
    kill_group,
    run,
    run_ok,
    wait_until,
)

from orchestration.ui import ui_command

LOCATION = "meterbook"
STARTUP_TIMEOUT = 180  # seconds for the webserver and the code location to come up

WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on PythonError { message }
    ... on Workspace { locationEntries { name loadStatus
        locationOrLoadError { __typename
          ... on PythonError { message stack }
          ... on RepositoryLocation { repositories { name jobs { name description } } } } } } } }
"""
LAUNCH = """
mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidStepError { invalidStepKey }
    ... on InvalidOutputError { invalidOutputName }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PipelineNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on InvalidSubsetError { message } } }
"""
RUN_STATUS = """
query Run($id: ID!) { runOrError(runId: $id) { __typename
    ... on Run { status tags { key value } }
    ... on RunNotFoundError { message } } }
"""
RUN_ERRORS = """
query Errors($id: ID!) { logsForRun(runId: $id) { __typename
    ... on EventConnection { events { __typename
        ... on MessageEvent { message level stepKey eventType timestamp }
        ... on ErrorEvent { error { message errorChain { error { message } } } } } } } }
"""
# the run's life as Dagster tells it: queued and launched (twice, if the daemon retried a
# launch), "process for run exited", a run worker that crashed, the run's own end
TELLING_EVENTS = {"RUN_ENQUEUED", "RUN_STARTING", "RUN_START", "ENGINE_EVENT", "RUN_FAILURE"}
# a log level (not dbt's "ERROR=0" summary), a traceback, a process that ended, and the
# lines of a run failure's message that name its child processes' errors ("<Name>Error: ...",
# "Stack Trace:"): that message spans many lines, and has no "Traceback"
TROUBLE = re.compile(
    r"\b(WARNING|ERROR|CRITICAL)\b(?!=)|Traceback|Exception|\w+Error:|Stack Trace|exited|terminated"
)
DONE = {"SUCCESS", "FAILURE", "CANCELED"}
# the runs of the job as the UI lists them on the job's page (runs of this code location only)
JOB_RUNS = """
query JobRuns($selector: PipelineSelector!) { pipelineOrError(params: $selector) { __typename
    ... on Pipeline { runs { runId status
        repositoryOrigin { repositoryLocationName repositoryName } } } } }
"""


@dataclass(frozen=True)
class UiOutcome:
    location: dict
    jobs: dict[str, str | None]
    launch: dict
    run_id: str | None
    status: str | None
    partition_tag: str | None
    errors: list[str]  # of a run that failed: what Dagster and dagster dev said about it
    invoices: Finished  # `meterbook invoices --json` once the server is stopped
    cli_runs: list[dict]  # the job's runs before the UI launched one: the CLI's close
    browser: BrowserOutcome  # what Chromium saw of the CLI's close


class GraphQL:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(
            self.url, data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def answers(self) -> bool:
        try:
            self("{ __typename }")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dagster_dev(home: Path, port: int) -> subprocess.Popen:
    """`dagster dev` as `meterbook ui` starts it (orchestration/ui.py), on this workspace's
    Dagster instance (named here: this process's DAGSTER_HOME may be another test's)."""
    env = dict(
        os.environ,
        METERBOOK_HOME=str(home),
        DAGSTER_HOME=str(home / "dagster"),
        METERBOOK_NOW=NOW,
    )
    with open(home.parent / "dagster-dev.log", "w") as log:
        return subprocess.Popen(
            ui_command("127.0.0.1", port),
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


def stop(server: subprocess.Popen) -> None:
    """Ctrl-C first (dagster dev shuts its children down), then the whole group for sure."""
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(timeout=20)
    kill_group(server.pid)
    server.wait()


def loaded_location(gql: GraphQL, server: subprocess.Popen) -> dict:
    def entry():
        assert server.poll() is None, "dagster dev exited"
        if not gql.answers():
            return None
        data = gql(WORKSPACE_QUERY)["workspaceOrError"]
        entries = {e["name"]: e for e in data.get("locationEntries", [])}
        found = entries.get(LOCATION)
        return found if found and found["loadStatus"] == "LOADED" else None

    return wait_until(entry, STARTUP_TIMEOUT, f"code location {LOCATION!r} to load", poll=0.5)


SELECTOR = {
    "repositoryLocationName": LOCATION,
    "repositoryName": "__repository__",
    "pipelineName": "month_end_close",
}


def job_runs(gql: GraphQL) -> list[dict]:
    found = gql(JOB_RUNS, selector=SELECTOR)["pipelineOrError"]
    return found.get("runs", [])


def launch_close(gql: GraphQL) -> dict:
    selector = {k: v for k, v in SELECTOR.items() if k != "pipelineName"}
    params = {
        "selector": {**selector, "jobName": "month_end_close"},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": PERIOD}]},
    }
    return gql(LAUNCH, params=params)["launchRun"]


def finished_run(gql: GraphQL, run_id: str) -> dict:
    def done():
        run = gql(RUN_STATUS, id=run_id)["runOrError"]
        return run if run.get("status") in DONE else None

    return wait_until(done, RUN_TIMEOUT, f"run {run_id} to finish", poll=1.0)


def run_errors(gql: GraphQL, run_id: str) -> list[str]:
    """One line per event that may say why the run failed: time, type, step, message, error.
    Not only step failures: a run can fail with none (its run worker died, say), and then the
    engine events and the run's own failure are all there is to read."""
    events = gql(RUN_ERRORS, id=run_id)["logsForRun"].get("events", [])
    lines = []
    for event in events:
        error = event.get("error")
        noted = event.get("level") in {"WARNING", "ERROR", "CRITICAL"}
        if not (error or noted or event.get("eventType") in TELLING_EVENTS):
            continue
        chain = [link["error"]["message"] for link in (error or {}).get("errorChain", [])]
        cause = chain[-1] if chain else (error or {}).get("message", "")
        said = [event.get("message", ""), cause]
        text = " | ".join(part.strip().splitlines()[0] for part in said if part.strip())
        when = time.strftime("%H:%M:%S", time.gmtime(int(event.get("timestamp") or 0) / 1000))
        kind, where = event.get("eventType") or event["__typename"], event.get("stepKey") or "run"
        lines.append(f"{when} {kind} {where}: {text or '?'}")
    return lines


def dev_log_trouble(home: Path, tail: int = 20) -> list[str]:
    """What dagster dev itself printed about trouble (a daemon that could not launch the run,
    a code server that lost its run worker), then its last lines; dbt's output is most of it."""
    log = home.parent / "dagster-dev.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    trouble = [line for line in lines if TROUBLE.search(line)]
    return [*trouble[-40:], "--- its last lines:", *lines[-tail:]]


def drive_the_ui(home: Path) -> UiOutcome:
    run_ok(home, "validate")  # like any command: the catalog, then dagster/ with telemetry off
    port = free_port()
    server = start_dagster_dev(home, port)
    gql = GraphQL(port)
    try:
        location = loaded_location(gql, server)
        repositories = (location["locationOrLoadError"] or {}).get("repositories", [])
        jobs = {j["name"]: j["description"] for r in repositories for j in r["jobs"]}
        cli_runs = job_runs(gql)
        cli_run = next((r["runId"] for r in cli_runs if r["status"] == "SUCCESS"), None)
        browser = look_at_the_ui(port, cli_run) if cli_run else BrowserOutcome("no CLI run")
        launch = launch_close(gql)
        run_id = (launch.get("run") or {}).get("runId")
        finished = finished_run(gql, run_id) if run_id else {}
        failed = finished.get("status") == "FAILURE"
        errors = run_errors(gql, run_id) if failed else []
    finally:
        stop(server)
    if failed:
        errors += ["--- what dagster dev printed about trouble:", *dev_log_trouble(home)]
    tags = {t["key"]: t["value"] for t in finished.get("tags", [])}
    return UiOutcome(
        location=location,
        jobs=jobs,
        launch=launch,
        run_id=run_id,
        status=finished.get("status"),
        partition_tag=tags.get("dagster/partition"),
        errors=errors,
        invoices=run(home, "invoices", "--period", PERIOD, "--json"),
        cli_runs=cli_runs,
        browser=browser,
    )
