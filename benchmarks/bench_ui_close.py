"""The month-end close from the CLI against the same close launched from the Dagster UI.

Run:  .venv/bin/python benchmarks/bench_ui_close.py [--month 2026-10] [--keep DIR]

Builds the demo's workspace (its catalog and events, before any close) twice, closes the month
with `meterbook close --period M` in the first, then starts `dagster dev` on the second (as
`meterbook ui` does, on 127.0.0.1 and a free port), launches the month's `month_end_close`
partition through the GraphQL API (what the UI's "Launch run" button sends) and polls the run
to its end. Prints both wall times, their ratio (target: at most 1.5), and how the UI's time
splits: from launch to the run's start (queue, daemon, run worker loading the code location),
the steps themselves, and the time between and after them.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestration.demo.generate import (  # noqa: E402
    MONTHS,
    SEED,
    demo_customers,
    write_catalog,
    write_month,
)
from orchestration.demo.run import DEMO_NOW  # noqa: E402
from orchestration.ui import ui_command, ui_environment  # noqa: E402
from orchestration.workspace import Workspace  # noqa: E402

METERBOOK = Path(sys.executable).parent / "meterbook"
JOB = "month_end_close"
STARTUP_TIMEOUT = 180
RUN_TIMEOUT = 900

WORKSPACE_QUERY = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
LAUNCH = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUN = """query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status creationTime
    startTime endTime stepStats { stepKey startTime endTime } } } }"""
DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def build_workspace(home: Path) -> Workspace:
    """The demo's inputs (demo/run.py), with no close run yet."""
    ws = Workspace(home).ensure()
    rng = random.Random(SEED)
    customers = demo_customers(rng)
    write_catalog(ws.catalog_dir, customers)
    for month in MONTHS:
        write_month(ws.landing_dir, customers, month, rng)
    return ws


def cli_close(ws: Workspace, month: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [str(METERBOOK), "--home", str(ws.home), "close", "--period", month],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GraphQL:
    def __init__(self, port: int):
        self.url = f"http://127.0.0.1:{port}/graphql"

    def __call__(self, query: str, **variables) -> dict:
        answer = requests.post(self.url, json={"query": query, "variables": variables}, timeout=30)
        answer.raise_for_status()
        body = answer.json()
        if "errors" in body:
            raise RuntimeError(body["errors"])
        return body["data"]


def wait_for(what: str, timeout: float, poll: float, probe):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            found = probe()
            if found:
                return found
        time.sleep(poll)
    raise TimeoutError(f"no {what} after {timeout} s")


def location_loaded(gql: GraphQL) -> bool:
    entries = gql(WORKSPACE_QUERY)["workspaceOrError"].get("locationEntries", [])
    return any(e["name"] == "meterbook" and e["loadStatus"] == "LOADED" for e in entries)


def ui_close(ws: Workspace, month: str, log: Path) -> tuple[float, dict]:
    port = free_port()
    with open(log, "w") as out:
        server = subprocess.Popen(
            ui_command("127.0.0.1", port),
            env=ui_environment(ws),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    gql = GraphQL(port)
    try:
        wait_for("code location", STARTUP_TIMEOUT, 0.5, lambda: location_loaded(gql))
        started = time.perf_counter()
        run_id = launch(gql, month)
        run = wait_for("finished run", RUN_TIMEOUT, 0.2, lambda: finished(gql, run_id))
        return time.perf_counter() - started, run
    finally:
        stop(server)


def launch(gql: GraphQL, month: str) -> str:
    selector = {"repositoryLocationName": "meterbook", "repositoryName": "__repository__"}
    params = {
        "selector": {**selector, "jobName": JOB},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": month}]},
    }
    launched = gql(LAUNCH, params=params)["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launch failed: {launched}")
    return launched["run"]["runId"]


def finished(gql: GraphQL, run_id: str) -> dict | None:
    run = gql(RUN, id=run_id)["runOrError"]
    return run if run.get("status") in DONE else None


def stop(server: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGINT)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def split(run: dict) -> dict[str, float]:
    """Where the UI's time went, from the run's own timestamps (seconds)."""
    steps = [s for s in run["stepStats"] if s["startTime"] and s["endTime"]]
    busy = sum(s["endTime"] - s["startTime"] for s in steps)
    first = min((s["startTime"] for s in steps), default=run["startTime"])
    return {
        "launch to run start": run["startTime"] - run["creationTime"],
        "run start to first step": first - run["startTime"],
        "steps": busy,
        "between and after steps": run["endTime"] - first - busy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--month", default=MONTHS[0])
    parser.add_argument("--keep", type=Path, help="build the workspaces here and keep them")
    args = parser.parse_args()
    os.environ["METERBOOK_NOW"] = DEMO_NOW
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-ui-close-"))
    try:
        cli_ws = build_workspace(root / "cli")
        ui_ws = Workspace(root / "ui")
        shutil.copytree(cli_ws.home, ui_ws.home)
        cli_seconds = cli_close(cli_ws, args.month)
        print(f"CLI close {args.month}: {cli_seconds:.1f} s", flush=True)
        ui_seconds, run = ui_close(ui_ws, args.month, root / "dagster-dev.log")
        print(f"UI close {args.month}: {ui_seconds:.1f} s ({run['status']}, launch to success)")
        for part, seconds in split(run).items():
            print(f"  {part}: {seconds:.1f} s")
        print(f"ratio UI / CLI: {ui_seconds / cli_seconds:.2f} (target <= 1.5)")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
