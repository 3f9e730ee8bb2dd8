"""`meterbook ui`: the Dagster UI on the workspace's own Dagster instance.

`dagster dev` without DAGSTER_HOME keeps its runs in a temporary folder, so it would show
none of the runs the CLI records in `$METERBOOK_HOME/dagster`; started from here, the UI and
the CLI share one run history.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from orchestration.interrupts import stopped
from orchestration.workspace import PROJECT_ROOT, Workspace

SHUTDOWN_SECONDS = 15


def ui_command(host: str, port: int) -> list[str]:
    """`dagster dev` from the same environment as this Python, on the project's workspace."""
    dagster = Path(sys.executable).parent / "dagster"
    workspace = PROJECT_ROOT / "workspace.yaml"
    return [str(dagster), "dev", "-w", str(workspace), "-h", host, "-p", str(port)]


def ui_environment(ws: Workspace) -> dict[str, str]:
    """This environment, pointed at the workspace and at the Dagster instance the CLI uses."""
    return dict(
        os.environ,
        METERBOOK_HOME=str(ws.home),
        METERBOOK_WAREHOUSE=str(ws.warehouse_path),
        DAGSTER_HOME=str(ws.dagster_home.resolve()),
    )


def run_ui(ws: Workspace, host: str = "127.0.0.1", port: int = 3000) -> int:
    """Serve the UI until Ctrl-C; the exit code is dagster dev's (0 after Ctrl-C)."""
    from orchestration.pipeline import activate  # noqa: PLC0415

    activate(ws)  # the workspace's folders and its dagster.yaml (webserver and daemon share it)
    command = ui_command(host, port)
    print(f"meterbook: Dagster UI on http://{host}:{port} (Ctrl-C stops it)", file=sys.stderr)
    server = subprocess.Popen(command, cwd=PROJECT_ROOT, env=ui_environment(ws))
    try:
        return server.wait()
    except KeyboardInterrupt:
        stopped()  # taken: the signal watcher need not repeat it
        return _shut_down(server)


def _shut_down(server: subprocess.Popen) -> int:
    """Ctrl-C reached dagster dev too (one process group) and it stops its webserver, daemon
    and code server; a SIGTERM sent to this process alone did not, so it is passed on."""
    for ask, wait in ((None, SHUTDOWN_SECONDS), (server.terminate, SHUTDOWN_SECONDS)):
        if ask is not None:
            ask()
        try:
            server.wait(timeout=wait)
            return 0
        except (subprocess.TimeoutExpired, KeyboardInterrupt):
            continue
    server.kill()
    server.wait()
    return 0
