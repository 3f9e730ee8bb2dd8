"""Shared by every test: dbt's manifest exists before any test reads a model through it.

Python names dbt models through the manifest (orchestration/warehouse/models.py); the product
parses the project before it reads a model (the Dagster definitions and the CLI's reports do),
and tests that call the billing functions directly get the same here, once per session.
"""

import pytest

from orchestration.defs.dbt.project import ensure_manifest


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest():
    return ensure_manifest()
