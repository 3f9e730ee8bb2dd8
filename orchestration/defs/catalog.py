"""The catalog (pricing as code) as an asset: validated YAML written to warehouse tables."""

from __future__ import annotations

from collections import Counter

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from orchestration.catalog.tables import write_catalog_tables
from orchestration.defs.resources import MeterbookWorkspace


@asset(
    key="pricing_catalog",
    group_name="ingest",
    description=(
        "catalog/*.yaml merged and validated (every mistake reported with file, path and line), "
        "then written to the meterbook_catalog tables that metering and rating read."
    ),
    kinds={"duckdb", "yaml"},
)
def pricing_catalog(
    context: AssetExecutionContext, meterbook: MeterbookWorkspace
) -> MaterializeResult:
    catalog = meterbook.catalog()
    with meterbook.warehouse("catalog") as con:
        write_catalog_tables(con, catalog)
    currencies = Counter(catalog.currency_of(c) for c in catalog.customers if not c.parent_id)
    return MaterializeResult(
        metadata={
            "meters": len(catalog.meters),
            "plans": len(catalog.plans),
            "customers": len(catalog.customers),
            "subscriptions": len(catalog.subscriptions),
            "customers_per_currency": MetadataValue.json(dict(sorted(currencies.items()))),
        }
    )
