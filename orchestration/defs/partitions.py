"""Partitions: usage is daily (UTC days), billing is monthly ('YYYY-MM').

They start at the workspace catalog's first subscription month, so the UI lists only months
that can have invoices. The asset decorators need a partitions definition when the stage modules
are imported, before anyone knows the workspace: they get the ones below, which start this
month, and `for_workspace` gives the workspace's own, which `definitions.build_definitions`
puts on every partitioned asset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetSpec,
    BackfillPolicy,
    DailyPartitionsDefinition,
    MonthlyPartitionsDefinition,
    PartitionsDefinition,
)

from orchestration.billing.month import BillingMonth
from orchestration.workspace import Workspace


def _fixed_now() -> datetime | None:
    text = os.environ.get("METERBOOK_NOW")
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def _now() -> datetime:
    return _fixed_now() or datetime.now(UTC)


def _daily(first: BillingMonth) -> DailyPartitionsDefinition:
    """UTC days up to today (included, so the month so far can be refreshed)."""
    now, wall = _fixed_now(), datetime.now(UTC)
    bounds = {"end_offset": 1}
    if now is not None:  # METERBOOK_NOW replays a moment: partitions end there
        ahead = (now.date() - wall.date()).days
        after = (now.date() + timedelta(days=1)).isoformat()
        bounds = {"end_offset": ahead + 1} if ahead >= 0 else {"end_date": after}
    return DailyPartitionsDefinition(
        start_date=first.first_day.isoformat(), fmt="%Y-%m-%d", **bounds
    )


def _monthly(first: BillingMonth) -> MonthlyPartitionsDefinition:
    """Months up to the one in progress (included, so its draft can be kept current)."""
    now, wall = _fixed_now(), datetime.now(UTC)
    bounds = {"end_offset": 1}
    if now is not None:
        ahead = (now.year * 12 + now.month) - (wall.year * 12 + wall.month)
        after = str(BillingMonth.of(now).next())
        bounds = {"end_offset": ahead + 1} if ahead >= 0 else {"end_date": after}
    return MonthlyPartitionsDefinition(start_date=str(first), fmt="%Y-%m", **bounds)


def first_month(ws: Workspace) -> BillingMonth:
    """The month of the catalog's first subscription; this month when the catalog is missing
    or invalid (the CLI refuses to run then anyway), or when every subscription starts later."""
    from orchestration.catalog import load_catalog_cached  # noqa: PLC0415

    this_month = BillingMonth.of(_now())
    try:
        starts = [s.start_date for s in load_catalog_cached(ws.catalog_dir).subscriptions]
    except Exception:  # noqa: BLE001 (whatever is wrong, the code location must still load)
        return this_month
    return min([BillingMonth.of(day) for day in starts] + [this_month])


@dataclass(frozen=True)
class Partitions:
    daily: DailyPartitionsDefinition
    monthly: MonthlyPartitionsDefinition

    @classmethod
    def starting(cls, first: BillingMonth) -> Partitions:
        return cls(_daily(first), _monthly(first))

    def replacing(self, spec: AssetSpec) -> AssetSpec:
        """The spec with these partitions instead of the placeholders of import time."""
        replacement: PartitionsDefinition | None = {
            id(daily_usage): self.daily,
            id(monthly_billing): self.monthly,
        }.get(id(spec.partitions_def))
        return spec if replacement is None else spec.replace_attributes(partitions_def=replacement)


def for_workspace(ws: Workspace) -> Partitions:
    return Partitions.starting(first_month(ws))


_placeholders = Partitions.starting(BillingMonth.of(_now()))
daily_usage = _placeholders.daily
monthly_billing = _placeholders.monthly


# Every partitioned asset reads its one partition key (dbt vars, Python writes keyed by it).
ONE_PARTITION_PER_RUN = BackfillPolicy.multi_run(max_partitions_per_run=1)
