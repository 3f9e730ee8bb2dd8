"""Invoice documents: one self-contained HTML page per invoice, PDF where Chromium is here.

Files, under `documents_dir/<period>/`:
- `draft-<invoice_id>.html`: rewritten on every run while the invoice is a draft; a draft
  that was finalized or disappeared has its file removed.
- `<number>.html` (+ `.pdf`): written once, when first seen finalized. The issued document
  never changes afterwards (the daily chart would otherwise move with late events).
- `<number>-void.html` (+ `.pdf`): written once when the invoice is voided; the original
  stays beside it.
PDF: printed by headless Chromium (`--print-to-pdf`) for finalized and void documents only,
when a `chromium` binary is on PATH; without it HTML only. Every text is HTML-escaped.
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from string import Template
from typing import Any

import duckdb

from orchestration.billing import line_kinds
from orchestration.billing.ledger import invoices_with_ledger
from orchestration.billing.money import round_money
from orchestration.catalog.models import Catalog, Customer
from orchestration.warehouse.tables import table_exists

TEMPLATE = Path(__file__).parent / "templates" / "invoice.html"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)
_ADDITIVE = ("count", "sum", "count_unique")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class DailyPoint:
    day: date
    quantity: Decimal


def render_documents(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    period: str,
    documents_dir: Path,
    document: dict[str, Any] | None = None,
    pdf: bool | None = None,
) -> list[Path]:
    """Write the period's invoice documents; returns every document path of the period.

    `document` defaults to `invoices_with_ledger(con, period)`. `pdf`: None prints PDFs when
    Chromium is installed, False never, True requires Chromium.
    """
    if document is None:
        document = invoices_with_ledger(con, period)
    browser = _pdf_browser(pdf)
    folder = Path(documents_dir) / period
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    usage = DailyUsage.load(con, document["invoices"])
    for invoice in document["invoices"]:
        paths += _write_invoice(usage, catalog, period, invoice, folder, browser)
    _remove_stale_drafts(folder, paths)
    return paths


def _pdf_browser(pdf: bool | None) -> str | None:
    if pdf is False:
        return None
    browser = chromium_path()
    if pdf and browser is None:
        raise RuntimeError("PDF documents need Chromium: apt-get install chromium")
    return browser


def _write_invoice(usage, catalog, period, invoice, folder: Path, browser) -> list[Path]:
    status = invoice["status"]
    if status == "draft":
        target = folder / f"draft-{_SAFE_NAME.sub('_', invoice['invoice_id'])}.html"
    else:
        suffix = "-void" if status == "void" else ""
        target = folder / f"{_SAFE_NAME.sub('_', invoice['number'])}{suffix}.html"
        if target.exists():  # issued documents are written once
            pdf_path = target.with_suffix(".pdf")
            return [target, *([pdf_path] if pdf_path.exists() else [])]
    customer = catalog.find_customer(invoice["customer_id"])
    charts = _charts(usage, catalog, invoice)
    target.write_text(render_invoice_html(invoice, period, customer, charts), encoding="utf-8")
    if status == "draft" or browser is None:
        return [target]
    return [target, print_pdf(target, target.with_suffix(".pdf"), browser)]


def _remove_stale_drafts(folder: Path, current: list[Path]) -> None:
    keep = set(current)
    for path in folder.glob("draft-*.html"):
        if path not in keep:
            path.unlink()


def render_invoice_html(
    invoice: dict[str, Any], period: str, customer: Customer | None, charts_html: str = ""
) -> str:
    """The invoice page. Pure: every value from the invoice or the catalog is escaped."""
    status = invoice["status"]
    number = invoice.get("number")
    heading = f"Invoice {number}" if number else "Draft invoice"
    values = {
        "title": heading,
        "heading": heading,
        "status": status,
        "status_class": status if status in ("draft", "finalized", "void") else "draft",
        "invoice_id": invoice["invoice_id"],
        "period_text": _span(invoice["period_start"], invoice["period_end"]),
        "close_month": period,
        "customer_name": (customer.name if customer and customer.name else invoice["customer_id"]),
        "subscription_id": invoice["subscription_id"],
        "currency": invoice["currency"],
        "source": "the ledger (finalized, frozen)" if number else "the current draft",
    }
    page = {key: _e(value) for key, value in values.items()}
    page["customer_details"] = _customer_details(invoice, customer)
    page["line_rows"] = "\n".join(
        _line_rows(line, invoice["currency"]) for line in invoice["lines"]
    )
    page["total_rows"] = _total_rows(invoice, customer)
    page["charts"] = charts_html
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(page)


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _span(start: str, end: str) -> str:
    """A half-open [start, end) as the days a reader expects: start to the last day."""
    last = date.fromisoformat(end) - timedelta(days=1)
    return f"{start} to {last.isoformat()}"


def _customer_details(invoice: dict[str, Any], customer: Customer | None) -> str:
    parts = [f"Customer id: {_e(invoice['customer_id'])}"]
    if customer and customer.email:
        parts.append(_e(customer.email))
    if customer:
        parts.append(f"Time zone: {_e(customer.timezone)}")
    return "<br>".join(parts)


def _quantity(value: Any) -> str:
    """A decimal without its trailing zeros: 4500.000000000000 reads 4500."""
    if value is None or value == "":
        return ""
    text = format(Decimal(str(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _line_rows(line: dict[str, Any], currency: str) -> str:
    kind = line_kinds.label(line["kind"])
    unit_price = line.get("unit_price")
    cells = [
        f'<td><div class="kind">{_e(kind)}</div>{_e(line.get("description"))}</td>',
        f'<td class="period">{_e(_span(line["period_start"], line["period_end"]))}</td>',
        f'<td class="num">{_e(_quantity(line.get("quantity")))}</td>',
        f'<td class="num">{_e(_quantity(line.get("billable_quantity")))}</td>',
        f'<td class="num">{_e(_quantity(unit_price))}</td>',
        f'<td class="num">{_e(currency)} {_e(line["amount"])}</td>',
    ]
    rows = [f'    <tr class="line">{"".join(cells)}</tr>']
    rows += [_tier_row(tier, currency) for tier in line.get("tiers") or []]
    return "\n".join(rows)


def _tier_row(tier: dict[str, Any], currency: str) -> str:
    upper = "∞" if tier.get("up_to") is None else _quantity(tier["up_to"])
    text = (
        f"Tier {tier.get('tier')} ({_quantity(tier.get('from') or 0)} to {upper}): "
        f"{_quantity(tier.get('quantity'))} × {_quantity(tier.get('unit_price'))}"
    )
    flat = tier.get("flat_fee")
    if flat is not None and Decimal(str(flat)) != 0:
        text += f" + flat fee {_quantity(flat)}"
    amount = f"{currency} {tier['amount']}" if tier.get("amount") is not None else ""
    return (
        f'    <tr class="tier"><td colspan="5">{_e(text)}</td>'
        f'<td class="num">{_e(amount)}</td></tr>'
    )


def _total_rows(invoice: dict[str, Any], customer: Customer | None) -> str:
    currency = invoice["currency"]
    rows = [("Subtotal", invoice["subtotal"])]
    if Decimal(invoice["discount_total"]) != 0:
        rows.append(("Discounts included above", f"-{invoice['discount_total']}"))
    rows.append((_tax_label(invoice, customer), invoice["tax_total"]))
    rows.append(("Total", invoice["total"]))
    if Decimal(invoice.get("credits_applied") or 0) != 0:
        rows.append(("Credits applied", f"-{invoice['credits_applied']}"))
    cells = [
        f'<tr><td>{_e(label)}</td><td class="num">{_e(currency)} {_e(v)}</td></tr>'
        for label, v in rows
    ]
    due = f'<tr class="due"><td>Amount due</td><td class="num">{_e(currency)} {_e(invoice["amount_due"])}</td></tr>'
    return "\n".join([*cells, due])


def _tax_label(invoice: dict[str, Any], customer: Customer | None) -> str:
    # the catalog's rate is shown only when it is the one this invoice was taxed at
    if customer is None:
        return "Tax"
    subtotal, rate = Decimal(invoice["subtotal"]), customer.tax_rate
    if round_money(subtotal * rate, invoice["currency"]) != Decimal(invoice["tax_total"]):
        return "Tax"
    return f"Tax ({_quantity(rate * 100)}% of subtotal)"


def _charts(usage: DailyUsage, catalog: Catalog, invoice: dict[str, Any]) -> str:
    codes = [line["meter"] for line in invoice["lines"] if line["kind"] == "usage"]
    meters = list(dict.fromkeys(code for code in codes if code))
    if not meters or not usage.available:
        return ""
    start, end = (
        date.fromisoformat(invoice["period_start"]),
        date.fromisoformat(invoice["period_end"]),
    )
    figures = []
    for code in meters:
        meter = catalog.find_meter(code)
        name = meter.display_name if meter else code
        additive = meter is None or meter.aggregation in _ADDITIVE
        points = usage.points(invoice["customer_id"], code, start, end, additive)
        if meter is not None and meter.unit is not None:
            # the line's units (per 1k tokens...), unrounded: the chart is for reading only
            points = [DailyPoint(p.day, p.quantity / meter.unit.divide_by) for p in points]
        figures.append(usage_chart_svg(name, points, start, end))
    return '<h2>Daily usage</h2>\n<div class="charts">\n' + "\n".join(figures) + "\n</div>"


@dataclass
class DailyUsage:
    """The daily usage behind a period's charts, read in one query (not one per invoice)."""

    available: bool
    # (billing customer, meter) -> [(day, sum over groups, max over groups)], by day
    rows: dict[tuple[str, str], list[tuple[date, Decimal, Decimal]]]

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, invoices: list[dict[str, Any]]) -> DailyUsage:
        if not invoices or not table_exists(con, "marts", "fct_daily_meter_usage"):
            return cls(False, {})
        start = min(date.fromisoformat(i["period_start"]) for i in invoices)
        end = max(date.fromisoformat(i["period_end"]) for i in invoices)
        rows: dict[tuple[str, str], list[tuple[date, Decimal, Decimal]]] = {}
        for customer, meter, day, total, peak in con.execute(
            """
            SELECT billing_customer_id, meter_code, usage_date,
                   cast(sum(daily_quantity) AS DECIMAL(38, 12)),
                   cast(max(daily_quantity) AS DECIMAL(38, 12))
            FROM marts.fct_daily_meter_usage
            WHERE usage_date >= ? AND usage_date < ?
            GROUP BY ALL ORDER BY 1, 2, 3
            """,
            [start, end],
        ).fetchall():
            rows.setdefault((customer, meter), []).append((day, total, peak))
        return cls(True, rows)

    def points(
        self, customer_id: str, meter_code: str, start: date, end: date, additive: bool
    ) -> list[DailyPoint]:
        """UTC days of [start, end) with usage; groups added for additive meters, else the max."""
        return [
            DailyPoint(day, total if additive else peak)
            for day, total, peak in self.rows.get((customer_id, meter_code), [])
            if start <= day < end
        ]


def usage_chart_svg(
    title: str, points: list[DailyPoint], start: date, end: date, width: int = 320, height: int = 96
) -> str:
    """A bar per day of [start, end) as inline SVG; pure, escaped, no floats."""
    days = max(1, (end - start).days)
    top = max((p.quantity for p in points), default=Decimal(0))
    plot_h, base = Decimal(height - 30), Decimal(height - 16)
    step = Decimal(width) / days
    bars = []
    for point in points:
        index = (point.day - start).days
        if not 0 <= index < days or top <= 0 or point.quantity <= 0:
            continue
        bar_h = (point.quantity / top * plot_h).quantize(Decimal("0.1"))
        x = (step * index).quantize(Decimal("0.01"))
        bar_w = max(Decimal("0.5"), (step * Decimal("0.8")).quantize(Decimal("0.01")))
        label = _e(f"{point.day.isoformat()}: {_quantity(point.quantity)}")
        bars.append(
            f'<rect x="{x}" y="{base - bar_h}" width="{bar_w}" height="{bar_h}" fill="#3b6fb6">'
            f"<title>{label}</title></rect>"
        )
    last = end - timedelta(days=1)
    caption = (
        f"{title}: peak {_quantity(top)} a day" if bars else f"{title}: no usage in this period"
    )
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_e(caption)}">'
        f'<line x1="0" y1="{base}" x2="{width}" y2="{base}" stroke="#8a97a6" stroke-width="1"/>'
        f"{''.join(bars)}"
        f'<text x="0" y="{height - 3}" font-size="10" fill="#5d6b7a">{_e(start.isoformat())}</text>'
        f'<text x="{width}" y="{height - 3}" font-size="10" fill="#5d6b7a" text-anchor="end">'
        f"{_e(last.isoformat())}</text></svg>"
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def chromium_path() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _run_chromium(browser: str, args: list[str], html_path: Path, timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix="meterbook-chromium-") as profile:
        command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        command.append(Path(html_path).resolve().as_uri())
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"chromium failed on {html_path} (exit {done.returncode}): {tail[0]}")


def print_pdf(
    html_path: Path, pdf_path: Path, browser: str | None = None, timeout: float = 60
) -> Path:
    """Print a document to PDF with headless Chromium (no network, fresh profile)."""
    browser = browser or chromium_path()
    if browser is None:
        raise RuntimeError("PDF documents need Chromium: apt-get install chromium")
    _run_chromium(
        browser, [f"--print-to-pdf={pdf_path}", "--no-pdf-header-footer"], html_path, timeout
    )
    if not Path(pdf_path).exists():
        raise RuntimeError(f"chromium wrote no PDF for {html_path}")
    return Path(pdf_path)


def screenshot(
    html_path: Path, png_path: Path, width: int = 1000, height: int = 1300, timeout: float = 60
) -> Path:
    """A PNG of the page as a person would see it (used by the tests)."""
    browser = chromium_path()
    if browser is None:
        raise RuntimeError("screenshots need Chromium: apt-get install chromium")
    _run_chromium(
        browser, [f"--screenshot={png_path}", f"--window-size={width},{height}"], html_path, timeout
    )
    return Path(png_path)
