"""The billing half of the catalog as tables (schema meterbook_catalog).

Plans, versions, charges and their tiers, fixed fees, plan credit grants, subscriptions with
their fee quantities, price overrides, discounts and auto top-ups, one-off credit grants, and
the settings. Values are typed columns
(DECIMAL(38, 12) for money, DATE for days); no SQL text is produced from the catalog here.
Subscriptions carry what rating needs of their customer (currency and its minor unit,
timezone, tax rate) so the billing models depend on this module's tables only.

`insert_rows` is the one way billing code writes rows: Arrow in, typed DDL, bound data.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import duckdb
import pyarrow as pa

from orchestration.catalog.currencies import minor_exponent
from orchestration.catalog.models import (
    Catalog,
    Customer,
    Plan,
    Pricing,
    Subscription,
    Tier,
    trial_end_of,
)
from orchestration.sql import transaction

SCHEMA = "meterbook_catalog"
Columns = Sequence[tuple[str, str]]

_ARROW = {
    "VARCHAR": pa.string(),
    "DATE": pa.date32(),
    "TIMESTAMPTZ": pa.timestamp("us", tz="UTC"),
    "DECIMAL(38, 12)": pa.decimal128(38, 12),
    "INTEGER": pa.int32(),
    "BIGINT": pa.int64(),
    "BOOLEAN": pa.bool_(),
    "JSON": pa.string(),
}

PRICING = [
    ("model", "VARCHAR"),
    ("unit_price", "DECIMAL(38, 12)"),
    ("package_size", "DECIMAL(38, 12)"),
    ("package_price", "DECIMAL(38, 12)"),
    ("rate", "DECIMAL(38, 12)"),
]
TIER = [
    ("tier_no", "INTEGER"),
    ("tier_from", "DECIMAL(38, 12)"),
    ("up_to", "DECIMAL(38, 12)"),
    ("unit_price", "DECIMAL(38, 12)"),
    ("flat_fee", "DECIMAL(38, 12)"),
]

TABLES: dict[str, Columns] = {
    "settings": [
        ("invoice_prefix", "VARCHAR"),
        ("grace_days", "INTEGER"),
        ("default_currency", "VARCHAR"),
    ],
    "plans": [
        ("plan_code", "VARCHAR"),
        ("plan_name", "VARCHAR"),
        ("currency", "VARCHAR"),
        ("currency_exponent", "INTEGER"),
        ("billing_interval", "VARCHAR"),
    ],
    "plan_versions": [
        ("plan_code", "VARCHAR"),
        ("version", "INTEGER"),
        ("effective_from", "DATE"),
        ("trial_days", "INTEGER"),
        ("minimum_spend", "DECIMAL(38, 12)"),
        ("maximum_spend", "DECIMAL(38, 12)"),
    ],
    "charges": [
        ("plan_code", "VARCHAR"),
        ("version", "INTEGER"),
        ("charge_no", "INTEGER"),
        ("meter_code", "VARCHAR"),
        ("meter_name", "VARCHAR"),
        ("charge_name", "VARCHAR"),
        *PRICING,
        ("free_units", "DECIMAL(38, 12)"),
        ("minimum", "DECIMAL(38, 12)"),
        ("maximum", "DECIMAL(38, 12)"),
        ("credit_price", "DECIMAL(38, 12)"),  # per_unit only; NULL: no credit price
    ],
    "tiers": [("plan_code", "VARCHAR"), ("version", "INTEGER"), ("meter_code", "VARCHAR"), *TIER],
    "fixed_fees": [
        ("plan_code", "VARCHAR"),
        ("version", "INTEGER"),
        ("fee_no", "INTEGER"),
        ("fee_code", "VARCHAR"),
        ("fee_name", "VARCHAR"),
        ("amount", "DECIMAL(38, 12)"),
        ("timing", "VARCHAR"),
    ],
    "subscriptions": [
        ("subscription_id", "VARCHAR"),
        ("customer_id", "VARCHAR"),
        ("plan_code", "VARCHAR"),
        ("start_date", "DATE"),
        ("end_date", "DATE"),
        ("billing_anchor", "VARCHAR"),
        ("pin_version", "BOOLEAN"),
        ("trial_end", "DATE"),  # effective: the subscription's, else from trial_days
        ("currency", "VARCHAR"),
        ("currency_exponent", "INTEGER"),
        ("timezone", "VARCHAR"),
        ("tax_rate", "DECIMAL(38, 12)"),
        ("billable", "BOOLEAN"),
    ],
    "subscription_quantities": [
        ("subscription_id", "VARCHAR"),
        ("fee_code", "VARCHAR"),
        ("quantity", "DECIMAL(38, 12)"),
    ],
    "price_overrides": [
        ("subscription_id", "VARCHAR"),
        ("override_no", "INTEGER"),
        ("meter_code", "VARCHAR"),
        *PRICING,
        ("effective_from", "DATE"),  # the subscription's start_date when not given
        ("effective_to", "DATE"),
    ],
    "price_override_tiers": [
        ("subscription_id", "VARCHAR"),
        ("override_no", "INTEGER"),
        *TIER,
    ],
    "discounts": [
        ("subscription_id", "VARCHAR"),
        ("discount_no", "INTEGER"),
        ("discount_code", "VARCHAR"),
        ("percent_off", "DECIMAL(38, 12)"),
        ("applies_to", "VARCHAR"),
        ("periods", "INTEGER"),
    ],
    "credit_grants": [
        ("grant_id", "VARCHAR"),
        ("customer_id", "VARCHAR"),  # the billing customer: the parent of a sub-account
        ("source_customer_id", "VARCHAR"),  # as written in the catalog
        ("kind", "VARCHAR"),
        ("amount", "DECIMAL(38, 12)"),
        ("granted_on", "DATE"),
        ("expires_on", "DATE"),  # exclusive; NULL: never
        ("priority", "INTEGER"),
        ("applies_to", "VARCHAR"),  # effective: usage for promotional, all for paid by default
        ("currency", "VARCHAR"),  # the billing customer's
        ("currency_exponent", "INTEGER"),
    ],
    "plan_credit_grants": [
        ("plan_code", "VARCHAR"),
        ("version", "INTEGER"),
        ("grant_no", "INTEGER"),
        ("grant_code", "VARCHAR"),
        ("kind", "VARCHAR"),
        ("amount", "DECIMAL(38, 12)"),
        ("every", "VARCHAR"),
        ("expires_after_days", "INTEGER"),
        ("rollover_max", "DECIMAL(38, 12)"),  # NULL: no rollover
        ("priority", "INTEGER"),
        ("applies_to", "VARCHAR"),  # effective
    ],
    "auto_top_ups": [
        ("subscription_id", "VARCHAR"),
        ("below", "DECIMAL(38, 12)"),
        ("amount", "DECIMAL(38, 12)"),
    ],
}


def insert_rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    columns: Columns,
    rows: Iterable[Sequence],
) -> None:
    """Append `rows` (tuples in `columns` order) to `table`, which must exist."""
    names = [name for name, _ in columns]
    schema = pa.schema([(name, _ARROW[sql_type]) for name, sql_type in columns])
    data = pa.Table.from_pylist([dict(zip(names, row, strict=True)) for row in rows], schema)
    view = "_billing_rows"
    con.register(view, data)
    try:
        select = ", ".join(f"CAST({n} AS {t})" for n, t in columns)
        con.execute(f"INSERT INTO {table} ({', '.join(names)}) SELECT {select} FROM {view}")
    finally:
        con.unregister(view)


def ddl(table: str, columns: Columns) -> str:
    return f"{table} ({', '.join(f'{name} {sql_type}' for name, sql_type in columns)})"


def _pricing(p: Pricing) -> tuple:
    return (p.model, p.unit_price, p.package_size, p.package_price, p.rate)


def _tiers(tiers: list[Tier] | None) -> list[tuple]:
    """Each tier with its lower bound, the previous up_to (0 for the first)."""
    rows, lower = [], Decimal(0)
    for i, tier in enumerate(tiers or [], start=1):
        rows.append((i, lower, tier.up_to, tier.unit_price, tier.flat_fee))
        lower = tier.up_to if tier.up_to is not None else lower
    return rows


def _plan_rows(catalog: Catalog, plan: Plan, out: dict[str, list]) -> None:
    out["plans"].append(
        (
            plan.code,
            plan.name or plan.code,
            plan.currency,
            minor_exponent(plan.currency),
            plan.interval,
        )
    )
    for v in plan.versions:
        key = (plan.code, v.version)
        out["plan_versions"].append(
            (*key, v.effective_from, v.trial_days, v.minimum_spend, v.maximum_spend)
        )
        for c, charge in enumerate(v.charges, start=1):
            meter_name = catalog.meter(charge.meter).display_name
            out["charges"].append(
                (*key, c, charge.meter, meter_name, charge.name or meter_name, *_pricing(charge))
                + (charge.free_units, charge.minimum, charge.maximum, charge.credit_price)
            )
            out["tiers"].extend((*key, charge.meter, *t) for t in _tiers(charge.tiers))
        for f, fee in enumerate(v.fixed_fees, start=1):
            out["fixed_fees"].append(
                (*key, f, fee.code, fee.name or fee.code, fee.amount, fee.timing)
            )
        for g, grant in enumerate(v.credit_grants, start=1):
            rollover_max = grant.rollover.max if grant.rollover is not None else None
            out["plan_credit_grants"].append(
                (*key, g, grant.code, grant.kind, grant.amount, grant.every)
                + (grant.expires_after_days, rollover_max, grant.priority)
                + (grant.effective_applies_to,)
            )


def _subscription_rows(
    catalog: Catalog, customer: Customer, plan: Plan, sub: Subscription, out: dict[str, list]
) -> None:
    currency = catalog.currency_of(customer)
    out["subscriptions"].append(
        (sub.id, sub.customer_id, sub.plan, sub.start_date, sub.end_date, sub.billing_anchor)
        + (sub.pin_version, trial_end_of(sub, plan), currency)
        + (minor_exponent(currency), customer.timezone, customer.tax_rate, customer.billable)
    )
    out["subscription_quantities"].extend((sub.id, k, q) for k, q in sub.quantities.items())
    for o, override in enumerate(sub.price_overrides, start=1):
        start = override.effective_from or sub.start_date
        out["price_overrides"].append(
            (sub.id, o, override.meter, *_pricing(override), start, override.effective_to)
        )
        out["price_override_tiers"].extend((sub.id, o, *t) for t in _tiers(override.tiers))
    for d, disc in enumerate(sub.discounts, start=1):
        out["discounts"].append(
            (sub.id, d, disc.code, disc.percent_off, disc.applies_to, disc.periods)
        )
    if sub.auto_top_up is not None:
        out["auto_top_ups"].append((sub.id, sub.auto_top_up.below, sub.auto_top_up.amount))


def _grant_rows(catalog: Catalog, out: dict[str, list]) -> None:
    for grant in catalog.credit_grants:
        payer = catalog.billing_customer(grant.customer_id)
        currency = catalog.currency_of(payer)
        out["credit_grants"].append(
            (grant.id, payer.id, grant.customer_id, grant.kind, grant.amount)
            + (grant.granted_on, grant.expires_on, grant.priority, grant.effective_applies_to)
            + (currency, minor_exponent(currency))
        )


def billing_rows(catalog: Catalog) -> dict[str, list[tuple]]:
    """Every row to write, computed before anything is written (nothing is half-applied)."""
    out: dict[str, list] = {name: [] for name in TABLES}
    s = catalog.settings
    out["settings"].append((s.invoice_prefix, s.grace_days, s.default_currency))
    for plan in catalog.plans:
        _plan_rows(catalog, plan, out)
    customers = {c.id: c for c in catalog.customers}  # Catalog.customer() scans: O(n) each
    plans = {p.code: p for p in catalog.plans}
    for sub in catalog.subscriptions:
        _subscription_rows(catalog, customers[sub.customer_id], plans[sub.plan], sub, out)
    _grant_rows(catalog, out)
    return out


def write_billing_tables(con: duckdb.DuckDBPyConnection, catalog: Catalog) -> None:
    """Rewrite the billing tables of meterbook_catalog from `catalog`, in one transaction."""
    rows = billing_rows(catalog)
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    with transaction(con):
        for name, columns in TABLES.items():
            con.execute(f"CREATE OR REPLACE TABLE {ddl(f'{SCHEMA}.{name}', columns)}")
            insert_rows(con, f"{SCHEMA}.{name}", columns, rows[name])
