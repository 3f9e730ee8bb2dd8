"""The month so far: a small HTML page per customer, from the published snapshot (SPEC 9).

Each page shows the current period of every subscription: the quantity of each meter, a
daily chart of each meter with usage, and the draft invoice's lines and totals. It is what
`GET /v1/customers/{id}/usage` answers, for a reader with a browser rather than a client.

Files: `documents_dir/usage/<customer>.html`, one per customer of the snapshot. They are
rewritten on every publish whose content changed, replaced atomically, and removed when
their customer leaves the snapshot. Rendering is pure; the same Jinja setup, charts and
number helpers as the invoice documents, so a figure reads the same on both.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from orchestration.billing.documents.chart import Chart, usage_chart
from orchestration.billing.documents.lines import kind_label, span
from orchestration.billing.documents.page import TEMPLATES
from orchestration.billing.documents.text import display_quantity, price_text
from orchestration.billing.documents.usage import DailyPoint
from orchestration.billing.money import minor_exponent
from orchestration.billing.templating import template_environment

USAGE_FOLDER = "usage"

_ENV = template_environment(TEMPLATES)  # catalog names and descriptions: never markup

# files.py keeps these characters and writes "_" for the rest; that is lossy ("org:a" and
# "org_a" would share a page, one customer reading another's usage), so here the rest is
# escaped as "~XX" per UTF-8 byte instead. "~" never occurs in a catalog code and is not
# kept itself, so names are one-to-one, and ids of the kept characters only read the same
# as in files.py.
_KEPT = re.compile(r"[A-Za-z0-9_.-]")
# a temporary name adds ~22 characters and must stay within NAME_MAX (255 bytes)
_MAX_NAME = 200
_TEMPORARY_SUFFIX = ".tmp"


@dataclass(frozen=True)
class _MeterRow:
    name: str
    code: str
    quantity: str
    events: str


@dataclass(frozen=True)
class _DraftRow:
    label: str
    description: str
    quantity: str
    amount: str


@dataclass(frozen=True)
class _Draft:
    invoice_id: str
    rows: list[_DraftRow]
    totals: list[tuple[str, str]]


@dataclass(frozen=True)
class _Subscription:
    subscription_id: str
    plan_name: str
    currency: str
    period_text: str
    meters: list[_MeterRow]
    charts: list[Chart]
    draft: _Draft | None


def render_month_so_far(customer: dict[str, Any]) -> str:
    """The page of one customer entry of the snapshot (`snapshot["customers"][id]`)."""
    usage = customer.get("usage") or {}
    customer_id = customer.get("customer_id") or usage.get("customer_id") or ""
    name = customer.get("name") or customer_id
    return _ENV.get_template("month_so_far.html").render(
        title=f"{name}: the month so far",
        customer_id=customer_id,
        currency=customer.get("currency") or "",
        as_of=_as_of_text(usage.get("as_of")),
        subscriptions=[_subscription(sub) for sub in usage.get("subscriptions") or []],
    )


def write_month_so_far_pages(documents_dir: Path, snapshot: dict[str, Any]) -> list[Path]:
    """Write the page of every customer of `snapshot`; returns the pages written now.

    A page whose content is unchanged is left alone, so a refresh that moved nothing does not
    rewrite 10,000 files (nor wake whatever watches them)."""
    folder = Path(documents_dir) / USAGE_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    written, current = [], set()
    for customer_id, customer in _in_period_order(snapshot.get("customers") or {}):
        path = folder / page_name(customer_id)
        current.add(path.name)
        if _write_if_changed(path, render_month_so_far({**customer, "customer_id": customer_id})):
            written.append(path)
    _remove_stale_pages(folder, current)
    return sorted(written)


def _in_period_order(customers: dict[str, Any]) -> list[tuple[str, Any]]:
    # chart.py keeps the drawn axes of 16 periods; anniversary billing has up to 31 period
    # starts a month, and in id order nearly every chart would redraw its axes (~60 ms, 8x
    # the page): about 170 s rather than 15 s for 10,000 customers
    def periods(item: tuple[str, Any]) -> list[tuple[str, str]]:
        subs = (item[1].get("usage") or {}).get("subscriptions") or []
        return [(sub["period_start"], sub["period_end"]) for sub in subs]

    return sorted(customers.items(), key=periods)


def page_name(customer_id: str) -> str:
    """The file name of a customer's page: one-to-one with the id, and safe on any disk."""
    stem = "".join(char if _KEPT.fullmatch(char) else _escaped(char) for char in customer_id)
    if len(stem) + len(".html") > _MAX_NAME:
        # "~~" never comes out of _escaped, so a shortened name cannot meet a plain one
        digest = hashlib.sha256(customer_id.encode("utf-8")).hexdigest()
        stem = f"{stem[:100]}~~{digest}"
    return f"{stem}.html"


def _escaped(char: str) -> str:
    return "".join(f"~{byte:02X}" for byte in char.encode("utf-8"))


def _as_of_text(as_of: str | None) -> str | None:
    if not as_of:
        return None
    try:
        moment = datetime.fromisoformat(as_of)
    except ValueError:
        return as_of  # shown as published rather than not at all
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _subscription(sub: dict[str, Any]) -> _Subscription:
    start = date.fromisoformat(sub["period_start"])
    end = date.fromisoformat(sub["period_end"])
    meters = sub.get("meters") or []
    return _Subscription(
        subscription_id=sub["subscription_id"],
        plan_name=sub.get("plan_name") or sub.get("plan") or "",
        currency=sub.get("currency") or "",
        period_text=span(sub["period_start"], sub["period_end"]),
        meters=[_meter_row(meter) for meter in meters],
        charts=[chart for chart in (_chart(m, start, end) for m in meters) if chart.png_data_uri],
        draft=_draft(sub["draft"]) if sub.get("draft") else None,
    )


def _meter_row(meter: dict[str, Any]) -> _MeterRow:
    events = meter.get("event_count")
    return _MeterRow(
        name=meter.get("name") or meter["meter"],
        code=meter["meter"],
        quantity=display_quantity(meter.get("quantity")),
        events="" if events is None else str(events),
    )


def _chart(meter: dict[str, Any], start: date, end: date) -> Chart:
    points = [
        DailyPoint(date.fromisoformat(day["date"]), Decimal(str(day["quantity"])))
        for day in meter.get("daily") or []
    ]
    # the meter's raw units: the snapshot carries no unit (per 1,000...) to divide by
    return usage_chart(meter.get("name") or meter["meter"], points, start, end)


def _draft(draft: dict[str, Any]) -> _Draft:
    currency = draft["currency"]
    rows = [
        _DraftRow(
            label=kind_label(line["kind"]) if line.get("kind") else "",
            description=line.get("description") or "",
            quantity=display_quantity(line.get("quantity")),
            amount=_money(line["amount"], currency),
        )
        for line in draft.get("lines") or []
    ]
    totals = [
        ("Subtotal", _money(draft["subtotal"], currency)),
        ("Tax", _money(draft["tax"], currency)),
        ("Total", _money(draft["total"], currency)),
    ]
    return _Draft(draft.get("invoice_id") or "", rows, totals)


def _money(value: Any, currency: str) -> str:
    # price_text, not format_money: an amount is shown with the currency's digits but never
    # rounded, so a figure that disagrees with the ledger shows as it is rather than hidden
    return f"{currency} {price_text(value, minor_exponent(currency))}"


def _write_if_changed(path: Path, text: str) -> bool:
    data = text.encode("utf-8")
    if _holds(path, data):
        return False
    _replace(path, data)
    return True


def _holds(path: Path, data: bytes) -> bool:
    try:
        # the size first: most changed pages are told apart without reading them
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except FileNotFoundError:
        return False


def _replace(path: Path, data: bytes) -> None:
    """A reader opens the old page or the new one, never half of one.

    No fsync: a page is derived and rebuilt on every publish. A crash can at worst leave an
    empty or old page, which differs from the next render and so is rewritten then; an fsync
    per page would cost seconds at 10,000 customers."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}{_TEMPORARY_SUFFIX}")
    # os.open rather than mkstemp: the page gets the umask's mode (0644 as a rule), as the
    # invoice documents do, not mkstemp's 0600 that a web server could not read
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _remove_stale_pages(folder: Path, current: set[str]) -> None:
    # temporary files are left alone: another writer may be about to rename its own
    for entry in os.scandir(folder):
        if entry.name.endswith(".html") and entry.name not in current and entry.is_file():
            Path(entry.path).unlink(missing_ok=True)
