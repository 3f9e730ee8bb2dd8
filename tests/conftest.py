"""Shared by every test: dbt's manifest exists before any test reads a model through it.

Python names dbt models through the manifest (orchestration/warehouse/models.py); the product
parses the project before it reads a model (the Dagster definitions and the CLI's reports do),
and tests that call the billing functions directly get the same here, once per session.
"""

import os

import pytest

from orchestration.defs.dbt.project import ensure_manifest

# PDFs cost ~0.2 s of CPU each and every finalize in the suite would print them: off for the
# suite (and the processes it starts); the tests of PDFs delete it or ask for PDFs outright
# (tests/close/test_close_documents.py, tests/billing/test_documents_pdf.py)
os.environ.setdefault("METERBOOK_PDF", "off")


@pytest.fixture(scope="session", autouse=True)
def dbt_manifest():
    return ensure_manifest()
