"""The Dagster UI path: `dagster dev -w workspace.yaml` on a workspace the CLI has closed, the
CLI's run found where finance looks for it (the job's page, the period's partition), then
`month_end_close` launched through GraphQL as the UI does, and `meterbook invoices --json`
(e2e_ui.py and e2e_browser.py drive it, conftest.py runs it beside the other flows).
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


def test_the_cli_close_is_a_run_of_the_code_locations_job(ui):
    assert ui.cli_runs, "the job's page lists no run of the CLI's close"
    for cli_run in ui.cli_runs:
        assert cli_run["repositoryOrigin"] == {
            "repositoryLocationName": "meterbook",
            "repositoryName": "__repository__",
        }


def test_the_browser_finds_the_cli_close_on_the_job_page_and_its_partition_materialized(ui):
    seen = ui.browser
    if seen.skipped:
        pytest.skip(f"no browser to look with: {seen.skipped}")
    assert seen.error is None, seen.error
    cli_run = next(r["runId"] for r in ui.cli_runs if r["status"] == "SUCCESS")
    assert seen.run_on_job_page, f"run {cli_run[:8]} not on the job's page:\n{seen.job_page}"
    panel = seen.partition_panel
    # the invoices asset's panel for the period: its status, the run and the job that built it
    after = panel[panel.rindex(PERIOD) :] if PERIOD in panel else ""
    assert "Materialized" in after and cli_run[:8] in after, panel
    assert "month_end_close" in after, panel


def test_a_close_launched_from_the_ui_succeeds_for_its_partition(ui):
    assert ui.launch["__typename"] == "LaunchRunSuccess", ui.launch
    assert ui.status == "SUCCESS", "\n".join(ui.errors)
    assert ui.partition_tag == PERIOD


def test_the_invoices_of_a_close_launched_from_the_ui_match_a_clean_close(ui, reference):
    assert ui.invoices.returncode == 0, ui.invoices.describe()
    assert json.loads(ui.invoices.stdout)["invoices"]
    assert ui.invoices.stdout == reference.invoices_json
