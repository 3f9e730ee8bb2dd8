"""Starts the scenarios' closes as soon as the suite is collected (test_scenarios.py says why)."""

import shutil
import tempfile
from pathlib import Path

_ROOT: list[Path] = []


def pytest_collection_finish(session):
    from test_scenarios import start_scenarios  # noqa: PLC0415 (collected by then)

    root = Path(tempfile.mkdtemp(prefix="meterbook-scenarios-"))
    _ROOT.append(root)
    start_scenarios(session.items, root)


def pytest_sessionfinish(session):
    from test_scenarios import OUTCOMES  # noqa: PLC0415

    for future in OUTCOMES.values():
        future.exception()  # the closes end before their workspaces are removed
    for root in _ROOT:
        shutil.rmtree(root, ignore_errors=True)
