"""The catalog (pricing as code) as assets: validated YAML written to warehouse tables."""

from collections import Counter

from dagster import AssetExecutionContext, AssetSpec, MaterializeResult, MetadataValue, multi_asset

from orchestration.catalog.tables import write_catalog_tables
from orchestration.defs.dbt.project import source_keys
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.sql import quote_identifier


@multi_asset(
    name="pricing_catalog",
    specs=[
        AssetSpec(
            key,
            group_name="catalog",
            description=(
                "The price list and customer list of catalog/*.yaml (meters, plans, customers, "
                f"subscriptions), checked and loaded as the {key.path[-1]} table. Reloaded by "
                "every ingest and close; after editing the catalog, `meterbook validate` says "
                "what is wrong before any run."
            ),
            kinds={"duckdb", "yaml"},
        )
        for key in source_keys("meterbook_catalog")
    ],
)
def pricing_catalog(context: AssetExecutionContext, meterbook: MeterbookWorkspace):
    catalog = meterbook.catalog()
    currencies = Counter(catalog.currency_of(c) for c in catalog.customers if not c.parent_id)
    summary = {
        "meters": len(catalog.meters),
        "plans": len(catalog.plans),
        "customers": len(catalog.customers),
        "subscriptions": len(catalog.subscriptions),
        "customers_per_currency": MetadataValue.json(dict(sorted(currencies.items()))),
    }
    with meterbook.warehouse() as con:
        write_catalog_tables(con, catalog)
        counts = {key: _row_count(con, key.path) for key in context.selected_asset_keys}
    for key in sorted(counts, key=lambda k: k.path):
        yield MaterializeResult(
            asset_key=key, metadata={**summary, "dagster/row_count": counts[key]}
        )


def _row_count(con, path: list[str]) -> int:
    return con.execute(
        f"SELECT count(*) FROM {'.'.join(quote_identifier(p) for p in path)}"
    ).fetchone()[0]
