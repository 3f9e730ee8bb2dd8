"""Entitlements and the month so far (SPEC 9), evaluated by every ingest, daily refresh and
close: the current period of each active subscription (its usage is counted by the usage
models' dbt build, tag `entitlements`), the snapshot `meterbook serve` answers from,
published atomically outside the warehouse, and the usage alerts."""

from collections import Counter

from dagster import (
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from integrations.webhooks.delivery import WebhookConfigError, deliver_pending, webhook_secret
from orchestration.billing.alerts.outbox import Outbox, outbox_path
from orchestration.billing.documents.month_so_far import write_month_so_far_pages
from orchestration.billing.entitlements.alert_readings import alert_readings
from orchestration.billing.entitlements.publish import (
    read_snapshot,
    snapshot_path,
    write_atomically,
)
from orchestration.billing.entitlements.reading import read_period_usage
from orchestration.billing.entitlements.snapshot import build_snapshot, iso_z, without_daily
from orchestration.billing.entitlements.windows import (
    current_periods,
    usage_as_of,
    windows_as_of,
    write_current_windows,
)
from orchestration.defs.dbt.project import model_key, source_keys
from orchestration.defs.ingest.assets import RAW_EVENTS
from orchestration.defs.resources import MeterbookWorkspace
from orchestration.ingest.refresh_status import record_refresh
from orchestration.workspace import now_utc

CURRENT_WINDOWS = AssetKey(["meterbook_entitlements", "current_windows"])


@asset(
    key=CURRENT_WINDOWS,
    group_name="entitlements",
    # before the usage models, which count these windows' events in the same dbt build
    deps=[*source_keys("meterbook_catalog"), RAW_EVENTS],
    description=(
        "The current billing period of every subscription active at the usage watermark (the "
        "latest event time ingested): what entitlements, alerts and the month-so-far views "
        "count. A step of every ingest, daily refresh and close."
    ),
    kinds={"python", "duckdb"},
)
def current_windows(meterbook: MeterbookWorkspace) -> MaterializeResult:
    catalog = meterbook.catalog()
    with meterbook.warehouse() as con:
        as_of = usage_as_of(con, now_utc())
        periods = current_periods(catalog, as_of) if as_of is not None else []
        written = write_current_windows(con, periods, as_of)
    plans = Counter(p.plan.code for p in periods)
    return MaterializeResult(
        metadata={
            "as_of": iso_z(as_of) or "no usage yet",
            "active_subscriptions": written,
            "per_plan": MetadataValue.json(dict(sorted(plans.items()))),
            "dagster/row_count": written,
        }
    )


@asset(
    key="entitlement_snapshot",
    group_name="entitlements",
    deps=[
        model_key("fct_current_period_usage"),
        model_key("fct_current_period_daily_usage"),
        model_key("fct_invoices"),
    ],
    description=(
        "What each customer may use now and how much is left (has access, limit, used, "
        "remaining), and its month so far (quantities, draft amounts, daily usage), published "
        "to published/snapshot.json for `meterbook serve`, replaced whole by every ingest, "
        "daily refresh and close; the daily refresh and the close also redraw a page per "
        "customer in documents/usage/."
    ),
    kinds={"python", "json"},
)
def entitlement_snapshot(
    context: AssetExecutionContext, meterbook: MeterbookWorkspace
) -> MaterializeResult:
    catalog = meterbook.catalog()
    with meterbook.reader() as con:
        # the periods the usage models just counted: those of the windows' own watermark
        as_of = windows_as_of(con) or usage_as_of(con, now_utc())
        periods = current_periods(catalog, as_of) if as_of is not None else []
        # The pages are documents, redrawn by the daily refresh and the close (which also
        # move the drafts they show); an ingest, which may run every few seconds, updates the
        # API only: a chart costs ~1.5 ms, a page up to CHARTED_METERS of them.
        drawn = context.job_name not in PAGES_SKIPPED_BY
        usage = read_period_usage(con, periods, daily=drawn)
    charted = build_snapshot(catalog, periods, usage, as_of, now_utc(), with_daily=drawn)
    snapshot = without_daily(charted) if drawn else charted
    ws = meterbook.workspace
    path = write_atomically(snapshot_path(ws.home), snapshot)
    pages = len(write_month_so_far_pages(ws.documents_dir, charted)) if drawn else None
    metadata = snapshot_metadata(snapshot, path, pages)
    refresh = record_refresh(ws.home, context.run_id, snapshot["as_of"])
    if refresh is not None:  # this run ingested events: how long they took to show
        metadata["lag_seconds"] = float(refresh["lag_seconds"])
        metadata["oldest_arrival"] = refresh["oldest_arrival"]
    return MaterializeResult(metadata=metadata)


PAGES_SKIPPED_BY = ("ingest_landing_files",)


def snapshot_metadata(snapshot: dict, path, pages_written: int | None) -> dict:
    answers = [a for c in snapshot["customers"].values() for a in c["entitlements"].values()]
    denied = [a for a in answers if not a["has_access"] and a["subscription_id"]]
    over_soft = [a for a in answers if a["soft"] and a["limit"] and a["remaining"] == "0"]
    return {
        "as_of": snapshot["as_of"] or "no usage yet",
        "path": MetadataValue.path(str(path)),
        "customers": len(snapshot["customers"]),
        "features": len(snapshot["features"]),
        "denied": len(denied),
        "at_or_over_soft_limits": len(over_soft),
        "pages_written": (
            pages_written if pages_written is not None else "not redrawn by an ingest"
        ),
        "denied_preview": MetadataValue.json(
            [{k: a[k] for k in ("customer_id", "feature", "limit", "used")} for a in denied[:20]]
        ),
    }


@asset(
    key="usage_alerts",
    group_name="entitlements",
    deps=["entitlement_snapshot"],
    description=(
        "Usage and spend alerts of the catalog checked against the published snapshot: each "
        "threshold a subscription's period crosses fires once (re-armed every period), is "
        "queued in the outbox (alerts/outbox.sqlite) and POSTed, signed, to settings.webhook "
        "before the run ends; what could not be delivered is sent by `meterbook notify`."
    ),
    kinds={"python", "sqlite"},
)
def usage_alerts(context: AssetExecutionContext, meterbook: MeterbookWorkspace):
    catalog = meterbook.catalog()
    ws = meterbook.workspace
    snapshot = read_snapshot(ws.home)
    readings = alert_readings(catalog, snapshot) if snapshot else []
    outbox = Outbox(outbox_path(ws.home))
    queued = outbox.enqueue_due(readings)
    metadata = {
        "readings": len(readings),
        "fired_now": len(queued),
        "fired_preview": MetadataValue.json([_fired(n) for n in queued[:20]]),
    }
    report = deliver(catalog, outbox, context.log)
    metadata.update(report)
    return MaterializeResult(metadata=metadata)


def deliver(catalog, outbox, log) -> dict:
    """Deliver what is pending, or say why it waits (never with the secret's value)."""
    webhook = catalog.settings.webhook
    if webhook is None:
        pending = len(outbox.pending())
        if pending:
            log.warning(f"{pending} alert(s) pending: settings.webhook is not set")
        return {"pending": pending, "delivery": "no settings.webhook: recorded only"}
    try:
        secret = webhook_secret(webhook.secret_env)
    except WebhookConfigError as exc:
        log.warning(f"alerts not sent: {exc}")
        return {"pending": len(outbox.pending()), "delivery": str(exc)}
    report = deliver_pending(outbox, webhook.url, secret, log=log)
    return {
        "delivered": report.delivered,
        "rejected": report.rejected,
        "pending": report.pending,
        "webhook_url": report.url,
    }


def _fired(notification) -> dict:
    return {
        "alert": notification.alert,
        "subscription_id": notification.subscription_id,
        "threshold": notification.threshold,
        "value": notification.value_text,
    }
