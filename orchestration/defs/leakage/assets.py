"""Revenue leakage in Dagster: the month's usage that bills nothing, per section, with its
counts and the largest rows as metadata (orchestration/billing/leakage.py computes it)."""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from orchestration.billing.leakage import SECTIONS, TITLES, leakage_report
from orchestration.defs.dbt.project import model_key
from orchestration.defs.partitions import ONE_PARTITION_PER_RUN, monthly_billing
from orchestration.defs.resources import MeterbookWorkspace

SHOWN = 5  # rows per section in the preview; the counts cover them all


@asset(
    key="revenue_leakage",
    group_name="billing",
    partitions_def=monthly_billing,
    backfill_policy=ONE_PARTITION_PER_RUN,
    deps=[model_key("fct_event_fates"), model_key("int_events_metered")],
    description=(
        "Usage of the month that bills nothing: events no meter counts, metered usage the "
        "customer's plan does not charge, usage of customers without an active subscription, "
        "conflicting events held for review and rejected events, each with counts and the "
        "first and last time seen. Read only: nothing is billed or changed. Built by every "
        "month-end close; materialize it again after a late file to review the month."
    ),
    kinds={"duckdb", "python"},
)
def revenue_leakage(
    context: AssetExecutionContext, meterbook: MeterbookWorkspace
) -> MaterializeResult:
    catalog = meterbook.catalog()
    with meterbook.reader() as con:
        report = leakage_report(con, catalog, context.partition_key)
    return MaterializeResult(metadata=leakage_metadata(report))


def leakage_metadata(report: dict) -> dict:
    """The counts per section (events and rows), and a preview of each section's largest rows."""
    metadata: dict = {f"{name}_events": report["totals"][name] for name in SECTIONS}
    metadata.update({f"{name}_rows": len(report[name]) for name in SECTIONS})
    metadata["totals"] = MetadataValue.json(report["totals"])
    metadata["largest"] = MetadataValue.md(_preview(report))
    return metadata


def _preview(report: dict) -> str:
    parts = [f"Events with a timestamp in {report['period']} (UTC)."]
    for name in SECTIONS:
        rows = report[name]
        parts.append(f"**{TITLES[name]}**: {report['totals'][name]} events")
        if not rows:
            parts.append("none")
            continue
        lines = ["| who | what | events | first seen | last seen |", "|---|---|---:|---|---|"]
        lines += [
            "| "
            + " | ".join(
                _md(cell)
                for cell in (_who(name, row), _what(name, row), str(row["count"]))
                + (row["first_seen"], row["last_seen"])
            )
            + " |"
            for row in rows[:SHOWN]
        ]
        if len(rows) > SHOWN:
            lines.append(f"| … and {len(rows) - SHOWN} more rows | | | | |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def _who(section: str, row: dict) -> str:
    if section == "rejected":
        return ""
    payer, customer = row["billing_customer_id"], row.get("customer_id")
    if customer is None or customer == payer:
        return payer or ""
    return f"{customer} (billed to {payer})" if payer else customer


def _what(section: str, row: dict) -> str:
    if section == "rejected":
        return row["reason"]
    if section == "uncharged_meters":
        plans = ", ".join(
            f"{s['subscription_id']} ({s['plan']} v{s['version']})" for s in row["subscriptions"]
        )
        return f"meter {row['meter']} ({row['event_name']}) on {plans}"
    return row["event_name"]


def _md(text: str | None) -> str:
    """A table cell: event names come from the events themselves."""
    return (text or "").replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")
