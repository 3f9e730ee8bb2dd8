"""The shared billing scenarios: metered quantities equal the `quantity` of their usage lines.

Windows are built here the simple way (a subscription's calendar month in the customer's
timezone, cut to its start and end dates), so only scenarios whose subscriptions need no
other cut (monthly calendar plans, one version in force, no dated overrides, no trial end)
are checked; the close stage owns real segments.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from metering_fixtures import Warehouse

from orchestration.catalog.loader import load_catalog
from orchestration.catalog.models import Catalog, Subscription
from orchestration.catalog.tables.metering import write_metering_tables

SCENARIOS = Path(__file__).resolve().parents[3] / "shared" / "scenarios"
NOW = datetime(2026, 11, 6, tzinfo=UTC)  # after every scenario event (scenarios README)


def _scenario_dirs() -> list[Path]:
    return sorted(p.parent for p in SCENARIOS.glob("*/scenario.yaml")) if SCENARIOS.exists() else []


def _months(folder: Path) -> list[str]:
    meta = yaml.safe_load((folder / "scenario.yaml").read_text())
    return [str(p) for p in meta.get("periods") or [meta["period"]]]


def _expected(folder: Path, month: str) -> dict:
    single = folder / "expected.json"
    return json.loads(
        (single if single.exists() else folder / f"expected_{month}.json").read_text()
    )


def _first_of(month: str) -> tuple[date, date]:
    year, mon = map(int, month.split("-"))
    return date(year, mon, 1), date(year + mon // 12, mon % 12 + 1, 1)


def _simple(catalog: Catalog, sub: Subscription) -> bool:
    plan = catalog.plan(sub.plan)
    dated = [o for o in sub.price_overrides if o.effective_from or o.effective_to]
    return (
        plan.interval == "month"
        and sub.billing_anchor == "calendar"
        and not dated
        and sub.trial_end is None
        and len(plan.versions) == 1
    )


def _window(catalog: Catalog, sub: Subscription, month: str) -> tuple | None:
    first, after = _first_of(month)
    start = max(first, sub.start_date)
    end = min(after, sub.end_date) if sub.end_date else after
    if start >= end:
        return None
    zone = ZoneInfo(catalog.customer(sub.customer_id).timezone)
    at = lambda day: datetime.combine(day, time(), zone).astimezone(UTC).isoformat()  # noqa: E731
    return (month, sub.id, sub.customer_id, at(start), at(end))


def _usage_lines(invoice: dict) -> dict:
    totals: dict = {}
    for line in invoice["lines"]:
        if line["kind"] == "usage":
            key = (
                line["meter"],
                json.dumps(line["group"], sort_keys=True) if line["group"] else None,
            )
            totals[key] = totals.get(key, Decimal(0)) + Decimal(line["quantity"])
    return totals


def _metered(wh: Warehouse, month: str, sub: Subscription, catalog: Catalog) -> dict:
    version = catalog.plan(sub.plan).versions[0]
    charged = {c.meter for c in version.charges}
    rows = wh.rows(
        "SELECT meter_code, group_key, sum(quantity) FROM marts.fct_period_meter_quantities "
        "WHERE close_month = ? AND window_id = ? GROUP BY ALL",
        [month, sub.id],
    )
    return {
        (meter, json.dumps(json.loads(group), sort_keys=True) if group else None): qty
        for meter, group, qty in rows
        if meter in charged
    }


def _close(folder: Path, tmp_path: Path) -> tuple[Warehouse, Catalog]:
    try:
        from orchestration.ingest.ingest import run_ingest  # noqa: PLC0415
    except ImportError:
        pytest.skip("the ingest stage (orchestration.ingest.ingest.run_ingest) has not landed")
    landing = tmp_path / "landing" / "events"
    shutil.copytree(folder / "events", landing)
    catalog = load_catalog(folder / "catalog")
    wh = Warehouse(tmp_path)
    with wh.connect() as con:
        run_ingest(con, landing, NOW)
        write_metering_tables(con, catalog)
    return wh, catalog


@pytest.mark.parametrize("folder", _scenario_dirs(), ids=lambda p: p.name)
def test_scenario_quantities(folder, tmp_path):
    wh, catalog = _close(folder, tmp_path)
    if not all(_simple(catalog, s) for s in catalog.subscriptions):
        pytest.skip(f"{folder.name}: needs segments beyond calendar months (close stage)")
    months = _months(folder)
    windows = [w for m in months for s in catalog.subscriptions if (w := _window(catalog, s, m))]
    wh.setup(catalog, [], windows)
    wh.dbt("run", "+fct_period_meter_quantities")  # data tests run in test_metering_models
    for month in months:
        for invoice in _expected(folder, month)["invoices"]:
            sub = next(s for s in catalog.subscriptions if s.id == invoice["subscription_id"])
            got = _metered(wh, month, sub, catalog)
            want = _usage_lines(invoice)
            assert got.keys() == want.keys(), (month, sub.id)
            for key, quantity in want.items():
                assert abs(got[key] - quantity) <= Decimal("0.000001"), (month, sub.id, key)
