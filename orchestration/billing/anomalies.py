"""Anomalies of a close month (SPEC 10): what finance should look at before finalizing.

`find_anomalies(con, month, anomaly_pct)` finds three kinds:

- **moved invoices**: a subscription's invoice of `month` whose `total` moved by more than
  `anomaly_pct` percent against the same subscription's previous invoice;
- **charges that appeared or disappeared** between those two invoices;
- **usage spikes**: a UTC day of `month` whose usage of a meter is more than 3 times the
  median of the 7 days before it.

How the rules are read:

- A month's invoices are its document as `meterbook invoices` shows it
  (`ledger.invoices_with_ledger`): finalized invoices from the ledger, drafts from
  `fct_invoices` for what is not finalized. Void invoices bill nothing and take no part, on
  either side. Should a subscription have several invoices in one close month, they count as
  one (totals added, lines put together).
- "The same subscription's previous invoice" is its invoice of the latest earlier close
  month that has one (a quarterly or yearly plan looks back past the months without an
  invoice). A subscription without one (its first invoice) is not compared, and a
  subscription with no invoice this month (it ended) is not reported.
- percent = (this total - previous total) / |previous total| x 100: positive when the total
  went up, also from a negative previous total (a credit). A move is flagged when
  |this - previous| x 100 > anomaly_pct x |previous|, exactly (so 50% with the default 50 is
  not flagged, 50.01% is); the percent kept is rounded half-up to 2 decimals. From a
  previous total of 0, any non-zero total is a move, with percent null (None). Two invoices
  in different currencies (the catalog changed the customer's currency) are reported as a
  move with percent null.
- A charge is a line's kind, meter, fee code and group (the group as canonical JSON);
  several lines of one charge (segments) add up to its amount. Every line kind counts, so a
  discount that ran out, a new group value of a `group_by` meter, a first true-up or a
  late-usage adjustment each show. Compared only for subscriptions that have a previous
  invoice; the amount is this invoice's for an appeared charge and the previous invoice's
  for a disappeared one.
- Usage spikes are per meter across all customers and groups (SPEC: "a day whose usage of a
  meter"), on UTC days, from the daily usage mart `fct_daily_meter_usage` when it holds rows
  for the days read, else from the metered events (`int_events_metered`, a workspace closed
  without the nightly refresh), as the invoice documents' charts do (a mart refreshed for
  only some of the days reads the others as 0: a spike may be missed, none is invented). A day's usage is
  the day's quantity added over customers and groups for the meters whose daily figures add
  up (`count`, `sum`, `count_unique`); a level (`max`, `min`, `latest`, `time_weighted`)
  does not add up and a day without events does not mean a level of 0, so for those meters
  the day's usage is its number of billable events (`measure` = "events").
  The trailing window is the 7 calendar days before the day. A day with no usage of the
  meter counts as 0, but only inside the span the workspace has data for (from its first
  day with usage of any meter): a day whose 7 days reach before that span is not checked.
  The median of the 7 values (the 4th of them sorted) must be above 0, and the day's usage
  must be strictly more than 3 times it: exactly 3 times is not a spike.

Amounts and ratios are Decimal; SQL only aggregates the daily usage per meter and day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import duckdb

from orchestration.billing.invoice_json import decimal_text
from orchestration.billing.ledger import group_json, invoices_with_ledger
from orchestration.billing.money import format_money
from orchestration.billing.month import BillingMonth
from orchestration.warehouse.ledger import ensure_ledger_schema
from orchestration.warehouse.models import model_exists, relation
from orchestration.warehouse.tables import table_exists

SPIKE_FACTOR = Decimal(3)
TRAILING_DAYS = 7
# levels: their daily figure does not add up over customers, and a day without events is no 0
LEVEL_AGGREGATIONS = ("max", "min", "latest", "time_weighted")
_CENT = Decimal("0.01")


@dataclass(frozen=True)
class MovedInvoice:
    subscription_id: str
    customer_id: str
    currency: str
    previous_month: str  # the close month of the previous invoice
    previous_total: Decimal
    total: Decimal
    percent: Decimal | None  # None: from a total of 0, or across currencies
    previous_currency: str

    def line(self) -> str:
        after = format_money(self.total, self.currency)
        if self.previous_currency != self.currency:
            move, after = f"currency changed to {self.currency}", f"{self.currency} {after}"
        elif self.percent is None:
            move = "from zero"
        else:
            move = f"{self.percent:+}%"
        before = format_money(self.previous_total, self.previous_currency)
        return (
            f"invoice moved {move}: {self.customer_id} / {self.subscription_id}, "
            f"{self.previous_currency} {before} in {self.previous_month} -> {after}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id,
            "customer_id": self.customer_id,
            "currency": self.currency,
            "previous_period": self.previous_month,
            "previous_currency": self.previous_currency,
            "previous_total": format_money(self.previous_total, self.previous_currency),
            "total": format_money(self.total, self.currency),
            "percent": None if self.percent is None else str(self.percent),
        }


@dataclass(frozen=True)
class ChargeChange:
    subscription_id: str
    customer_id: str
    currency: str
    previous_month: str
    change: str  # "appeared" | "disappeared"
    kind: str
    meter: str | None
    fee_code: str | None
    group: str | None  # canonical JSON (ledger.group_json), None without a group
    amount: Decimal  # this invoice's (appeared) or the previous invoice's (disappeared)

    def line(self) -> str:
        what = " ".join(x for x in (self.kind, self.meter, self.fee_code, self.group) if x)
        where = "not on" if self.change == "appeared" else "was on"
        return (
            f"charge {self.change}: {self.customer_id} / {self.subscription_id}, {what}, "
            f"{self.currency} {format_money(self.amount, self.currency)} "
            f"({where} the {self.previous_month} invoice)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "subscription_id": self.subscription_id,
            "customer_id": self.customer_id,
            "currency": self.currency,
            "previous_period": self.previous_month,
            "change": self.change,
            "kind": self.kind,
            "meter": self.meter,
            "fee_code": self.fee_code,
            "group": self.group,
            "amount": format_money(self.amount, self.currency),
        }


@dataclass(frozen=True)
class UsageSpike:
    meter: str
    day: date
    usage: Decimal
    median: Decimal  # of the 7 days before `day`
    ratio: Decimal  # usage / median, rounded half-up to 2 decimals
    measure: str  # "quantity" (the meter's own units, before `unit`) | "events"

    def line(self) -> str:
        unit = " events" if self.measure == "events" else ""
        return (
            f"usage spike: {self.meter} on {self.day}, {decimal_text(self.usage)}{unit} "
            f"({self.ratio}x its trailing 7-day median of {decimal_text(self.median)})"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "meter": self.meter,
            "day": self.day.isoformat(),
            "usage": decimal_text(self.usage),
            "median": decimal_text(self.median),
            "ratio": str(self.ratio),
            "measure": self.measure,
        }


@dataclass(frozen=True)
class Anomalies:
    month: str
    anomaly_pct: Decimal
    moved_invoices: tuple[MovedInvoice, ...] = ()
    charges_changed: tuple[ChargeChange, ...] = ()
    usage_spikes: tuple[UsageSpike, ...] = ()
    # the relation the daily usage came from; None: no usage to check in this warehouse
    usage_from: str | None = field(default=None)

    def counts(self) -> dict[str, int]:
        return {
            "moved_invoices": len(self.moved_invoices),
            "charges_changed": len(self.charges_changed),
            "usage_spikes": len(self.usage_spikes),
        }

    @property
    def found(self) -> int:
        return sum(self.counts().values())

    def lines(self) -> list[str]:
        """One readable line per anomaly: moved invoices, changed charges, usage spikes."""
        items: Iterable = (*self.moved_invoices, *self.charges_changed, *self.usage_spikes)
        return [item.line() for item in items]

    def to_json(self) -> dict[str, Any]:
        return {
            "period": self.month,
            "anomaly_pct": decimal_text(self.anomaly_pct),
            "counts": self.counts(),
            "moved_invoices": [m.to_json() for m in self.moved_invoices],
            "charges_changed": [c.to_json() for c in self.charges_changed],
            "usage_spikes": [s.to_json() for s in self.usage_spikes],
            "usage_from": self.usage_from,
        }


def find_anomalies(
    con: duckdb.DuckDBPyConnection,
    month: str,
    anomaly_pct: Decimal,
    document: dict[str, Any] | None = None,
) -> Anomalies:
    """The anomalies of close month `month` ('YYYY-MM'); the rules are in the module's
    docstring. `document`: the month's `invoices_with_ledger` document when the caller has it
    already (the close does)."""
    billing_month = BillingMonth.parse(month)
    pct = Decimal(anomaly_pct)
    if document is None:
        document = invoices_with_ledger(con, month)
    bills = _bills(document)
    previous = _previous_bills(con, month, set(bills))
    moved, changed = [], []
    for subscription, bill in sorted(bills.items(), key=lambda b: (b[1].customer_id, b[0])):
        if subscription not in previous:
            continue
        before_month, before = previous[subscription]
        move = _move(subscription, bill, before_month, before, pct)
        if move is not None:
            moved.append(move)
        changed.extend(_charge_changes(subscription, bill, before_month, before))
    spikes, usage_from = _usage_spikes(con, billing_month)
    return Anomalies(month, pct, tuple(moved), tuple(changed), tuple(spikes), usage_from)


# --- invoices -----------------------------------------------------------------------------

ChargeKey = tuple[str, str, str, str]  # kind, meter, fee_code, group ("" for none)


@dataclass
class _Bill:
    """A subscription's non-void invoices of one close month, as one."""

    customer_id: str
    currency: str
    total: Decimal = Decimal(0)
    charges: dict[ChargeKey, Decimal] = field(default_factory=dict)


def _bills(document: dict[str, Any]) -> dict[str, _Bill]:
    bills: dict[str, _Bill] = {}
    for invoice in document.get("invoices", []):
        if invoice["status"] == "void":
            continue
        bill = bills.setdefault(
            invoice["subscription_id"], _Bill(invoice["customer_id"], invoice["currency"])
        )
        bill.total += Decimal(invoice["total"])
        for line in invoice["lines"]:
            key = (
                line["kind"],
                line.get("meter") or "",
                line.get("fee_code") or "",
                group_json(line.get("group")) or "",
            )
            bill.charges[key] = bill.charges.get(key, Decimal(0)) + Decimal(line["amount"])
    return bills


def _previous_bills(
    con: duckdb.DuckDBPyConnection, month: str, subscriptions: set[str]
) -> dict[str, tuple[str, _Bill]]:
    """Each subscription's bill of the latest earlier close month that has a non-void one."""
    candidates = _earlier_months(con, month)
    documents: dict[str, dict[str, _Bill]] = {}
    found = {}
    for subscription in subscriptions:
        for earlier in candidates.get(subscription, ()):
            if earlier not in documents:
                documents[earlier] = _bills(invoices_with_ledger(con, earlier))
            bill = documents[earlier].get(subscription)
            if bill is not None:  # else all of that month's invoices were voided
                found[subscription] = (earlier, bill)
                break
    return found


def _earlier_months(con: duckdb.DuckDBPyConnection, month: str) -> dict[str, list[str]]:
    """Per subscription, the earlier close months with a draft or a ledger invoice of it,
    latest first: where to look, before reading those months' documents (a month where the
    subscription's only invoice is void is skipped when its document is read)."""
    ensure_ledger_schema(con)
    sources = ["SELECT subscription_id, close_month FROM meterbook_ledger.invoices"]
    if model_exists(con, "fct_invoices"):
        sources.append(f"SELECT subscription_id, close_month FROM {relation('fct_invoices')}")
    rows = con.execute(
        f"SELECT subscription_id, list(DISTINCT close_month ORDER BY close_month DESC)"
        f" FROM ({' UNION ALL '.join(sources)}) WHERE close_month < ? GROUP BY 1",
        [month],
    ).fetchall()
    return dict(rows)


def _move(
    subscription: str, bill: _Bill, before_month: str, before: _Bill, pct: Decimal
) -> MovedInvoice | None:
    difference = bill.total - before.total
    if bill.currency != before.currency:
        percent = None
    elif before.total == 0:
        if bill.total == 0:
            return None
        percent = None
    else:
        if abs(difference) * 100 <= pct * abs(before.total):
            return None
        percent = (difference * 100 / abs(before.total)).quantize(_CENT, ROUND_HALF_UP)
    return MovedInvoice(
        subscription,
        bill.customer_id,
        bill.currency,
        before_month,
        before.total,
        bill.total,
        percent,
        before.currency,
    )


def _charge_changes(
    subscription: str, bill: _Bill, before_month: str, before: _Bill
) -> list[ChargeChange]:
    changes = []
    for change, charges, other, currency in (
        ("appeared", bill.charges, before.charges, bill.currency),
        ("disappeared", before.charges, bill.charges, before.currency),
    ):
        for key in sorted(set(charges) - set(other)):
            kind, meter, fee_code, group = key
            changes.append(
                ChargeChange(
                    subscription,
                    bill.customer_id,
                    currency,
                    before_month,
                    change,
                    kind,
                    meter or None,
                    fee_code or None,
                    group or None,
                    charges[key],
                )
            )
    return changes


# --- usage ----------------------------------------------------------------------------------

# per meter and UTC day: the day's usage added over customers and groups, or for a level its
# billable events (see the module's docstring)
_FROM_DAILY = """
    SELECT d.meter_code, d.usage_date,
           CASE WHEN m.aggregation IN {levels}
                THEN cast(sum(d.event_count) AS DECIMAL(38, 12))
                ELSE cast(sum(d.daily_quantity) AS DECIMAL(38, 12)) END,
           m.aggregation IN {levels}
    FROM {relation} AS d LEFT JOIN {meters} AS m USING (meter_code)
    WHERE d.usage_date >= {low} AND d.usage_date < {high}
    GROUP BY d.meter_code, d.usage_date, m.aggregation
"""
_FROM_EVENTS = """
    WITH per_group AS (
        SELECT meter_code, event_date AS usage_date, any_value(aggregation) AS aggregation,
               CASE any_value(aggregation)
                   WHEN 'sum' THEN coalesce(sum(value), 0)
                   WHEN 'count_unique' THEN cast(count(DISTINCT text_value) AS DECIMAL(38, 12))
                   ELSE cast(count(*) AS DECIMAL(38, 12))  -- count, and a level's events
               END AS usage
        FROM {relation}
        WHERE event_date >= {low} AND event_date < {high}
          AND event_ts >= {low_ts} AND event_ts < {high_ts}
        GROUP BY meter_code, event_date, billing_customer_id, group_key
    )
    SELECT meter_code, usage_date, cast(sum(usage) AS DECIMAL(38, 12)),
           any_value(aggregation) IN {levels}
    FROM per_group GROUP BY 1, 2
"""
# is there usage before the days read? (then all of them are inside the workspace's span)
_BEFORE = {
    "fct_daily_meter_usage": "SELECT 1 FROM {relation} WHERE usage_date < {low} LIMIT 1",
    "int_events_metered": (
        "SELECT 1 FROM {relation} WHERE event_date < {low} AND event_ts < {low_ts} LIMIT 1"
    ),
}
_NO_METERS = "(SELECT NULL::VARCHAR AS meter_code, NULL::VARCHAR AS aggregation WHERE false)"


def _usage_spikes(
    con: duckdb.DuckDBPyConnection, month: BillingMonth
) -> tuple[list[UsageSpike], str | None]:
    low = month.first_day - timedelta(days=TRAILING_DAYS)
    params = _bounds(low, month.end)
    found = _daily_usage(con, params)
    if found is None:
        return [], None
    model, rows = found
    usage: dict[str, dict[date, Decimal]] = {}
    levels: set[str] = set()
    for meter, day, quantity, is_level in rows:
        usage.setdefault(meter, {})[day] = quantity
        if is_level:
            levels.add(meter)
    before = con.execute(_BEFORE[model].format(relation=relation(model), **params)).fetchall()
    first_day = low if before else min(min(days) for days in usage.values())
    spikes = []
    day = max(month.first_day, first_day + timedelta(days=TRAILING_DAYS))
    while day < month.end:
        for meter in sorted(usage):
            spike = _spike(meter, day, usage[meter], meter in levels)
            if spike is not None:
                spikes.append(spike)
        day += timedelta(days=1)
    spikes.sort(key=lambda s: (s.meter, s.day))
    return spikes, model


def _daily_usage(con, params: dict[str, str]) -> tuple[str, list[tuple]] | None:
    """The daily mart where it has rows for the days read, else the metered events."""
    meters = (
        "meterbook_catalog.meters"
        if table_exists(con, "meterbook_catalog", "meters")
        else _NO_METERS
    )
    levels = "(" + ", ".join(f"'{a}'" for a in LEVEL_AGGREGATIONS) + ")"
    for model, query in (
        ("fct_daily_meter_usage", _FROM_DAILY),
        ("int_events_metered", _FROM_EVENTS),
    ):
        if not model_exists(con, model):
            continue
        sql = query.format(relation=relation(model), meters=meters, levels=levels, **params)
        rows = con.execute(sql).fetchall()
        if rows:
            return model, rows
    return None


def _spike(meter: str, day: date, usage: dict[date, Decimal], level: bool) -> UsageSpike | None:
    trailing = sorted(
        usage.get(day - timedelta(days=back), Decimal(0)) for back in range(1, TRAILING_DAYS + 1)
    )
    median = trailing[TRAILING_DAYS // 2]
    today = usage.get(day, Decimal(0))
    if median <= 0 or today <= SPIKE_FACTOR * median:
        return None
    ratio = (today / median).quantize(_CENT, ROUND_HALF_UP)
    return UsageSpike(meter, day, today, median, ratio, "events" if level else "quantity")


def _bounds(low: date, high: date) -> dict[str, str]:
    # dates computed here, never text from outside: safe as literals, and literals let the
    # scans of the fates and raw events skip other days' row groups
    return {
        "low": f"DATE '{low.isoformat()}'",
        "high": f"DATE '{high.isoformat()}'",
        "low_ts": f"TIMESTAMPTZ '{low.isoformat()} 00:00:00+00'",
        "high_ts": f"TIMESTAMPTZ '{high.isoformat()} 00:00:00+00'",
    }
