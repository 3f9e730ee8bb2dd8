"""Issue 19: the lifecycle property test (see lifecycle_machine.py for the oracle).

In CI it runs a few short sequences: each step that closes runs the whole pipeline (ingest,
dbt, rating, documents) in this process, about 10 s, and every sequence ends by closing and
finalizing every month. `scripts/soak_lifecycle.py` runs the same machine for longer.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test
from lifecycle_machine import LifecycleMachine

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("METERBOOK_LIFECYCLE_EXAMPLES", "2"))
STEPS = int(os.environ.get("METERBOOK_LIFECYCLE_STEPS", "5"))


def test_every_billable_event_is_billed_exactly_once_in_any_order():
    run_state_machine_as_test(
        LifecycleMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,  # the same sequences on every CI run; the soak explores
            suppress_health_check=list(HealthCheck),
            database=None,
        ),
    )
