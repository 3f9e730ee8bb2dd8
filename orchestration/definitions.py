"""The one entry point of the Dagster code location: everything in defs/, merged."""

from __future__ import annotations

import warnings

from dagster import BetaWarning, Definitions

from orchestration.defs.resources import build_resources, default_workspace
from orchestration.workspace import Workspace

# backfill_policy is "beta" in Dagster; we rely only on its stable one-partition-per-run form
warnings.filterwarnings("ignore", category=BetaWarning)


def build_definitions(ws: Workspace) -> Definitions:
    from orchestration.defs import catalog, jobs  # noqa: PLC0415
    from orchestration.defs.close import assets as close_assets  # noqa: PLC0415
    from orchestration.defs.ingest import assets as ingest_assets  # noqa: PLC0415
    from orchestration.defs.stripe import assets as stripe_assets  # noqa: PLC0415
    from orchestration.defs.transform import assets as dbt_assets  # noqa: PLC0415

    return Definitions(
        assets=[
            ingest_assets.raw_events,
            catalog.pricing_catalog,
            dbt_assets.usage_models,
            dbt_assets.daily_usage_models,
            dbt_assets.billing_models,
            *close_assets.ASSETS,
            *stripe_assets.ASSETS,
        ],
        asset_checks=[*close_assets.CHECKS, *jobs.CHECKS],
        jobs=[*jobs.JOBS, *stripe_assets.JOBS],
        schedules=[*jobs.SCHEDULES, *stripe_assets.SCHEDULES],
        sensors=[ingest_assets.landing_files_sensor, ingest_assets.backfill_touched_days],
        resources={**build_resources(ws), **stripe_assets.resources()},
    )


defs = build_definitions(default_workspace())
