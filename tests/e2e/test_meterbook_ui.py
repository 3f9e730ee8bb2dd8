"""`meterbook ui` (orchestration/ui.py): `dagster dev` on the workspace's own Dagster instance,
so the UI shows every run the CLI recorded. The UI itself is driven in test_e2e_dagster_ui.py,
through the same command line."""

from __future__ import annotations

import sys
from pathlib import Path

from orchestration import ui
from orchestration.workspace import PROJECT_ROOT, Workspace


class _Server:
    """Stands for the `dagster dev` process: records how it was started, exits at once."""

    started: dict = {}

    def __init__(self, command, cwd, env):
        _Server.started = {"command": command, "cwd": cwd, "env": env}

    def wait(self, timeout=None):  # noqa: ARG002 (Popen.wait's signature)
        return 0


def test_the_ui_runs_dagster_dev_on_the_workspace_s_own_instance(tmp_path, monkeypatch):
    for name in ("DAGSTER_HOME", "METERBOOK_HOME", "METERBOOK_WAREHOUSE"):
        monkeypatch.setenv(name, "")  # unset for the test; activate() exports them, undone after
    monkeypatch.setattr(ui.subprocess, "Popen", _Server)
    ws = Workspace(tmp_path / "home")
    assert ui.run_ui(ws, "127.0.0.1", 3123) == 0
    command, env = _Server.started["command"], _Server.started["env"]
    assert command == [
        str(Path(sys.executable).parent / "dagster"),
        "dev",
        "-w",
        str(PROJECT_ROOT / "workspace.yaml"),
        "-h",
        "127.0.0.1",
        "-p",
        "3123",
    ]
    assert env["DAGSTER_HOME"] == str((tmp_path / "home" / "dagster").resolve())
    assert env["METERBOOK_HOME"] == str(ws.home)
    assert (tmp_path / "home" / "dagster" / "dagster.yaml").exists()  # telemetry off
    assert _Server.started["cwd"] == PROJECT_ROOT
