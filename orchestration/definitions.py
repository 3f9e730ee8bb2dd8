"""The one entry point of the Dagster code location: whatever the stage folders under defs/
declare (assets, checks, jobs, schedules, sensors), found by Dagster's own module loading."""

from __future__ import annotations

import warnings

from dagster import (
    BetaWarning,
    Definitions,
    PreviewWarning,
    in_process_executor,
    load_definitions_from_package_module,
)

from orchestration.defs.partitions import for_workspace
from orchestration.defs.resources import build_resources, default_workspace
from orchestration.workspace import Workspace

# backfill_policy is "beta" in Dagster; we rely only on its stable one-partition-per-run form
warnings.filterwarnings("ignore", category=BetaWarning)


def build_definitions(ws: Workspace) -> Definitions:
    from orchestration import defs  # noqa: PLC0415 (parses the dbt project: only when asked)

    with warnings.catch_warnings():
        # the package loader is "preview"; it only collects module-level definitions, and
        # tests/orchestration/test_definitions.py pins every job, schedule and sensor it finds
        warnings.simplefilter("ignore", PreviewWarning)
        # One process per run, as the CLI runs them: the default executor starts a process per
        # step, each importing Dagster and parsing the dbt manifest, which tripled the time of
        # a close launched from the UI. The steps of a job run one after the other anyway
        # (each stage reads the previous one's tables in the one DuckDB warehouse).
        loaded = load_definitions_from_package_module(
            defs, resources=build_resources(ws), executor=in_process_executor
        )
        return loaded.map_asset_specs(func=for_workspace(ws).replacing)


defs = build_definitions(default_workspace())
