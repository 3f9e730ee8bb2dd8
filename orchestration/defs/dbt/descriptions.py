"""What the dbt models and tests are for, in finance's words, for the Dagster UI.

The dbt project documents its models for engineers (columns, rules, the variables a model
reads). Finance reads the same pages in the UI: each description starts with what the table is
for and which run builds it; the engineers' text follows as detail, without references to
internal documents and variable names, and without the model's SQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# the tables finance opens; every other model is a step on the way to them
FINANCE = {
    "fct_invoices": (
        "The month's draft invoices, one per subscription period, with subtotal, tax and "
        "total. Rebuilt by every month-end close for review; finalize the month to number "
        "and freeze them."
    ),
    "fct_invoice_lines": (
        "Every line of the month's draft invoices, with how its amount was worked out (tiers, "
        "proration, trial, credits). Rebuilt by every month-end close."
    ),
    "fct_event_fates": (
        "Every usage record received and what became of it (billed, duplicate, conflict, "
        "excluded, rejected, unmetered) with the reason: where to look when a customer "
        "questions their usage. Updated by every ingest and close."
    ),
    "fct_daily_meter_usage": (
        "Usage per customer, meter and day: the month to date. Updated by the nightly refresh "
        "and by every close."
    ),
    "fct_period_meter_quantities": (
        "The usage quantity billed per customer, meter and billing period of the month. "
        "Rebuilt by every month-end close."
    ),
    "fct_current_period_usage": (
        "What each active subscription has used of every meter in its current period so far: "
        "what entitlements and usage alerts compare with their limits and thresholds."
    ),
    "fct_current_period_daily_usage": (
        "Each active subscription's current period day by day, per meter: the month-so-far charts."
    ),
    "fct_revenue_schedule": (
        "Revenue recognition: every finalized invoice line spread over the days it is earned "
        "(usage by day, fees over their period, credits bought as they are drawn or expire). "
        "Rebuilt from finalized invoices by the revenue job."
    ),
    "fct_revenue_rollforward": (
        "The month's recognized revenue and its deferred and unbilled roll-forwards, per "
        "customer and currency. Built by the revenue job, after finalization."
    ),
    "fct_revenue_journal": (
        "The month's revenue journal: balanced debits and credits per day and account, "
        "ready for the general ledger. Built by the revenue job, after finalization."
    ),
    "line_kinds": (
        "The kinds of invoice lines (usage, fixed fees, adjustments, discounts, ...), their "
        "order on the invoice and how their revenue is recognised. Loaded by every close."
    ),
}
STEP = {
    "usage": "A step of every ingest, nightly refresh and month-end close; not run on its own.",
    "billing": "A step of the month-end close; not run on its own.",
    "revenue": "A step of the revenue job (after finalization); not run on its own.",
    "entitlements": (
        "A step of every ingest, daily refresh and close: the current period's usage for "
        "entitlements, alerts and the month-so-far views; not run on its own."
    ),
}
_INTERNAL = [
    (re.compile(r"\s*\((?:see |per )?SPEC [0-9.]+\)"), ""),  # references to the spec document
    (re.compile(r"\bper SPEC [0-9.]+"), "per the billing rules"),
    (re.compile(r"\b(?:see )?SPEC [0-9.]+"), "the billing rules"),
    (re.compile(r"\bvar(?:iable)? (close_month|min_date|max_date)\b"), "the run's \\1"),
]


def model_description(props: Mapping[str, Any], group: str) -> str:
    """What the model is for and when it is built, then the dbt description as detail."""
    name = props["name"]
    detail = engineers_text(props.get("description") or "")
    lead = FINANCE.get(name) or f"{_kind(name)} {STEP.get(group, STEP['billing'])}"
    return f"{lead}\n\nDetail: {detail}" if detail else lead


def _kind(name: str) -> str:
    if name.startswith("stg_"):
        return "Inputs tidied for billing (catalog, usage files or earlier closes)."
    if name.startswith("int_current_period"):
        return "An intermediate result on the way to entitlements and usage alerts."
    if name.startswith("int_revenue"):
        return "An intermediate result on the way to the month's revenue."
    if name.startswith("int_"):
        return "An intermediate result on the way to the month's invoices."
    return "A table the invoices are built from."


def engineers_text(text: str) -> str:
    for pattern, replacement in _INTERNAL:
        text = pattern.sub(replacement, text)
    return text.strip()


def test_description(test: Mapping[str, Any], model: str) -> str:
    """A dbt test as a check finance can read: what it guarantees, and what a failure means."""
    meta = test.get("test_metadata") or {}
    kind, kwargs = meta.get("name", ""), meta.get("kwargs") or {}
    column = kwargs.get("column_name") or test.get("column_name") or ""
    said = {
        "not_null": f"{column} is filled in on every row of {model}",
        "unique": f"no two rows of {model} share the same {column}",
        "accepted_values": f"{column} in {model} only takes its known values",
        "relationships": f"every {column} in {model} refers to an existing row",
    }.get(kind)
    own = engineers_text(test.get("description") or "")
    guarantee = said or own or f"the data test {test.get('name', '')} on {model} passes"
    warns = str((test.get("config") or {}).get("severity", "error")).lower() == "warn"
    outcome = (
        "a failure is a warning to look into"
        if warns
        else "if it fails, the run fails and the month's numbers must not be used until it is fixed"
    )
    return f"Guarantees that {guarantee}. Runs with the step that builds {model}; {outcome}."
