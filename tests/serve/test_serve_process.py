"""`serve()` as `meterbook serve` runs it: in the foreground of its own process, reporting its
URL once it listens, and returning normally (exit 0) on SIGTERM or SIGINT."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from serve_snapshots import publish

from orchestration.serve.server import serve

ROOT = Path(__file__).resolve().parents[2]
PROGRAM = """
import sys
from pathlib import Path
from orchestration.serve.server import serve
serve(Path(sys.argv[1]), port=0, on_ready=lambda url: print(url, flush=True))
print("returned", flush=True)
"""


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_answers_until_a_signal_then_returns(tmp_path, stop):
    home = tmp_path / "home"
    publish(home, generation=5)
    process = subprocess.Popen(
        [sys.executable, "-c", PROGRAM, str(home)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:"), process.stderr.read()
        answer = httpx.get(f"{url}/v1/customers/acme/entitlements/emails")
        assert answer.json()["used"] == "5"
        process.send_signal(stop)
        out, err = process.communicate(timeout=10)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 0, err
    assert out.strip() == "returned"
    assert "Traceback" not in err


def test_the_server_loads_neither_dagster_nor_dbt_nor_the_warehouse():
    """`meterbook serve` answers from the snapshot alone: importing it (and building the app)
    brings in none of the pipeline (the layers contract allows reports, pipeline and defs
    below it; this holds it to the snapshot)."""
    forbidden = (
        "dagster", "dagster_dbt", "dbt", "duckdb", "orchestration.cli", "orchestration.pipeline",
        "orchestration.reports", "orchestration.defs", "orchestration.warehouse",
    )  # fmt: skip
    program = (
        "import sys; from pathlib import Path\n"
        "from orchestration.serve.app import create_app\n"
        "from orchestration.serve.server import running_server, serve\n"
        "create_app(Path('.'))\n"
        "print(' '.join(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert not {m for m in loaded if m.split(".")[0] in forbidden or m.startswith(forbidden)}


def test_serve_raises_oserror_when_the_port_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="could not listen"):
            serve(tmp_path / "home", port=taken.getsockname()[1])
