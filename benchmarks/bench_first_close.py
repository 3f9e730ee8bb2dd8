"""The first close of a new workspace, several in a row: what a newcomer, a test or a
backfill into a new workspace pays before anything is cached beside its warehouse.

Run:  .venv/bin/python benchmarks/bench_first_close.py [--scenario DIR] [--count 4]

Copies one scenario's catalog and events (default: ../shared/scenarios/basic_usage_fees)
into `count` new workspaces and runs `meterbook close --period P` in each, one after the
other, in fresh processes, and prints each close's wall time. Compare two versions by running
this with each in turn (the machine drifts; alternate them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
METERBOOK = Path(sys.executable).parent / "meterbook"
DEFAULT = REPO.parent / "shared" / "scenarios" / "basic_usage_fees"


def close_once(scenario: Path, period: str, root: Path, n: int) -> float:
    home = root / f"home{n}"
    shutil.copytree(scenario / "catalog", home / "catalog")
    if (scenario / "events").is_dir():
        shutil.copytree(scenario / "events", home / "landing" / "events")
    env = dict(os.environ, METERBOOK_HOME=str(home), METERBOOK_NOW="2026-11-20T00:00:00Z")
    env.pop("DAGSTER_HOME", None)
    started = time.time()
    done = subprocess.run(
        [str(METERBOOK), "close", "--period", period, "--home", str(home)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.time() - started
    if done.returncode != 0:
        sys.exit(f"close {n} failed:\n{done.stderr[-3000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=DEFAULT)
    parser.add_argument("--count", type=int, default=4)
    args = parser.parse_args()
    spec = yaml.safe_load((args.scenario / "scenario.yaml").read_text())
    period = str(spec.get("period") or spec["periods"][0])
    print(f"scenario {args.scenario.name}, period {period}, {args.count} new workspaces")
    times = []
    with tempfile.TemporaryDirectory(prefix="bench-first-close-") as tmp:
        for n in range(args.count):
            times.append(close_once(args.scenario, period, Path(tmp), n))
            print(f"  close {n + 1}: {times[-1]:6.1f} s")
    print(f"median {statistics.median(times):.1f} s, mean {statistics.mean(times):.1f} s")


if __name__ == "__main__":
    main()
