"""The Dagster UI path: `dagster dev -w workspace.yaml` on a fresh workspace, `month_end_close`
launched through GraphQL as the UI does, then `meterbook invoices --json` (e2e_ui.py drives it,
conftest.py runs it beside the other end-to-end flows).
"""

from __future__ import annotations

import json

import pytest
from e2e_helpers import PERIOD

from orchestration.defs.close.jobs import finalize_invoices, month_end_close

pytestmark = pytest.mark.slow


def test_the_code_location_loads_in_the_webserver(ui):
    location = ui.location["locationOrLoadError"]
    assert ui.location["loadStatus"] == "LOADED"
    assert location["__typename"] == "RepositoryLocation", location


def test_the_close_and_finalize_jobs_are_there_with_their_descriptions(ui):
    assert month_end_close.description and finalize_invoices.description
    assert ui.jobs.get("month_end_close") == month_end_close.description
    assert ui.jobs.get("finalize_invoices") == finalize_invoices.description


def test_a_close_launched_from_the_ui_succeeds_for_its_partition(ui):
    assert ui.launch["__typename"] == "LaunchRunSuccess", ui.launch
    assert ui.status == "SUCCESS", "\n".join(ui.errors)
    assert ui.partition_tag == PERIOD


def test_the_invoices_of_a_close_launched_from_the_ui_match_a_clean_close(ui, reference):
    assert ui.invoices.returncode == 0, ui.invoices.describe()
    assert json.loads(ui.invoices.stdout)["invoices"]
    assert ui.invoices.stdout == reference.invoices_json
