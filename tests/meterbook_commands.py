"""`meterbook` as the real-command tests run it: a subprocess on one workspace, at a fixed
"now" (METERBOOK_NOW), without the caller's Dagster home or Stripe key. On sys.path through
the root conftest's folder, as every test folder's own helpers are."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

METERBOOK = Path(sys.executable).parent / "meterbook"


def meterbook(home: Path, now: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, METERBOOK_NOW=now)
    env.pop("DAGSTER_HOME", None)
    env.pop("STRIPE_API_KEY", None)
    return subprocess.run(
        [str(METERBOOK), *args, "--home", str(home)],
        env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def ok(home: Path, now: str, *args: str) -> str:
    """The command's stdout; a failure shows its command line and the end of its stderr."""
    done = meterbook(home, now, *args)
    assert done.returncode == 0, (
        f"`meterbook {' '.join(args)}` exited {done.returncode}:\n{done.stderr[-3000:]}"
    )
    return done.stdout
