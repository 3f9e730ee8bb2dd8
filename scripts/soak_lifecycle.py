"""The lifecycle property test for longer: random sequences of drop, ingest, close, finalize
and void against the oracle of tests/close/lifecycle_machine.py; prints how many ran.

    .venv/bin/python scripts/soak_lifecycle.py --examples 40 --steps 10 [--seed N] [--no-shrink]

Each sequence costs about 10 s per close it makes (three at its end), on this machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis.stateful import run_state_machine_as_test

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "close"))
from lifecycle_machine import RUNS, LifecycleMachine  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None, help="default: a random seed")
    parser.add_argument(
        "--no-shrink",
        action="store_true",
        help="report the first failing sequence as found (shrinking reruns the pipeline a lot)",
    )
    args = parser.parse_args()
    machine = LifecycleMachine if args.seed is None else seed(args.seed)(LifecycleMachine)
    RUNS["report"] = 1
    started = time.monotonic()
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=args.examples,
                stateful_step_count=args.steps,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
                phases=[Phase.explicit, Phase.generate] if args.no_shrink else list(Phase),
            ),
        )
    finally:
        minutes = (time.monotonic() - started) / 60
        print(
            f"soak: {RUNS['sequences']} sequences, {RUNS['steps']} commands "
            f"({RUNS['closes']} closes, {RUNS['refused_finalizes']} finalizes refused) "
            f"in {minutes:.1f} min",
            flush=True,
        )
    print("soak: every sequence billed each event exactly once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
