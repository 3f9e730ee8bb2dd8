"""The price backtest's results as files: SPEC 10 JSON, CSVs, an HTML report, a terminal summary.

Every amount is printed with its currency's minor digits (`BacktestResult.exponents`), every
percentage with two decimals; a percentage that does not exist (baseline 0, candidate not) is
JSON null and an empty CSV cell. The same result gives byte-identical files: rows are in the
result's order, no file carries the time it was written, and the charts are PNGs without
metadata (matplotlib's Agg draws the same pixels for the same figure).
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot can be imported anywhere: never a window
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator, StrMethodFormatter  # noqa: E402

from orchestration.billing.backtest.results import (  # noqa: E402
    BacktestResult,
    InvoiceChange,
    LineChange,
    Mover,
    Movers,
)
from orchestration.billing.templating import template_environment  # noqa: E402

__all__ = [
    "INVOICE_COLUMNS",
    "LINE_COLUMNS",
    "PLAN_COLUMNS",
    "amount_text",
    "percent_text",
    "render_html",
    "text_summary",
    "to_json",
    "write_all",
    "write_csv",
    "write_html",
    "write_json",
]

TEMPLATES = Path(__file__).parent / "templates"
_ENV = template_environment(TEMPLATES)

INVOICE_COLUMNS = (
    "period",
    "customer_id",
    "subscription_id",
    "currency",
    "baseline_plan_id",
    "candidate_plan_id",
    "baseline_invoice_id",
    "candidate_invoice_id",
    "baseline",
    "candidate",
    "difference",
    "percent",
)
LINE_COLUMNS = (
    "period",
    "customer_id",
    "subscription_id",
    "currency",
    "kind",
    "meter",
    "fee_code",
    "group",
    "period_start",
    "period_end",
    "description",
    "in_baseline",
    "in_candidate",
    "baseline",
    "candidate",
    "difference",
    "percent",
)
PLAN_COLUMNS = (
    "plan_id",
    "period",
    "currency",
    "invoices",
    "baseline",
    "candidate",
    "difference",
    "percent",
)


# ---------------------------------------------------------------- text of amounts


def amount_text(amount: Decimal, exponent: int) -> str:
    """Exactly `exponent` digits after the point; never "-0.00"."""
    text = format(Decimal(amount).quantize(Decimal(1).scaleb(-exponent)), "f")
    return text[1:] if text.startswith("-") and not Decimal(text) else text


def percent_text(percent: Decimal | None) -> str | None:
    return None if percent is None else amount_text(percent, 2)


def _signed(text: str | None) -> str:
    """ "+12.00" for a rise (a person reads a difference); "" for no percentage."""
    if text is None:
        return ""
    return text if text.startswith("-") or not Decimal(text) else "+" + text


def _measures(row: Any, exponent: int) -> dict[str, str | None]:
    return {
        "baseline": amount_text(row.baseline, exponent),
        "candidate": amount_text(row.candidate, exponent),
        "difference": amount_text(row.difference, exponent),
        "percent": percent_text(row.percent),
    }


# ---------------------------------------------------------------- JSON (SPEC 10)


def _invoice_json(invoice: InvoiceChange, exponent: int) -> dict[str, Any]:
    return {
        "customer_id": invoice.customer_id,
        "subscription_id": invoice.subscription_id,
        "period": invoice.period,
        "currency": invoice.currency,
        **_measures(invoice, exponent),
    }


def _line_json(invoice: InvoiceChange, line: LineChange, exponent: int) -> dict[str, Any]:
    return {
        "customer_id": invoice.customer_id,
        "subscription_id": invoice.subscription_id,
        "period": invoice.period,
        "currency": invoice.currency,
        "kind": line.kind,
        "meter": line.meter,
        "fee_code": line.fee_code,
        "group": line.group_value,
        "period_start": line.period_start,
        "period_end": line.period_end,
        "description": line.description,
        "in_baseline": line.in_baseline,
        "in_candidate": line.in_candidate,
        **_measures(line, exponent),
    }


def to_json(result: BacktestResult) -> dict[str, Any]:
    """SPEC 10's document: from, to, currency_totals, invoices (subtotals before tax), then
    plans (per plan and month), movers (per currency, up and down) and the lines that change
    (every line is in lines.csv: at 10,000 customers x 20 charges x 3 months, 313 MB of JSON
    held whole in memory to write it, for a document mostly of unchanged lines)."""
    digits = result.exponents
    return {
        "from": result.first,
        "to": result.last,
        "currency_totals": {
            code: {
                "baseline": amount_text(total.baseline, digits[code]),
                "candidate": amount_text(total.candidate, digits[code]),
                "difference": amount_text(total.difference, digits[code]),
            }
            for code, total in result.currency_totals.items()
        },
        "invoices": [_invoice_json(i, digits[i.currency]) for i in result.invoices],
        "plans": [
            {
                "plan_id": plan.plan_id,
                "period": plan.period,
                "currency": plan.currency,
                "invoices": plan.invoices,
                **_measures(plan, digits[plan.currency]),
            }
            for plan in result.plans
        ],
        "movers": {
            code: {
                direction: [
                    {
                        "customer_id": mover.customer_id,
                        "invoices": mover.invoices,
                        **_measures(mover, digits[code]),
                    }
                    for mover in getattr(movers, direction)
                ]
                for direction in ("up", "down")
            }
            for code, movers in result.movers.items()
        },
        "lines": [
            _line_json(invoice, line, digits[invoice.currency])
            for invoice in result.invoices
            for line in invoice.lines
            if line.changed
        ],
    }


def _dumps(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def write_json(result: BacktestResult, path: Path) -> Path:
    path = Path(path)
    path.write_text(_dumps(to_json(result)), encoding="utf-8")
    return path


# ---------------------------------------------------------------- CSV


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _write_rows(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([_cell(row[column]) for column in columns] for row in rows)
    return path


def write_csv(result: BacktestResult, folder: Path) -> list[Path]:
    """invoices.csv, lines.csv and plans.csv in `folder` (created), each with its header."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digits = result.exponents
    invoices = [
        {
            **_invoice_json(invoice, digits[invoice.currency]),
            "baseline_plan_id": invoice.baseline_plan_id,
            "candidate_plan_id": invoice.candidate_plan_id,
            "baseline_invoice_id": invoice.baseline_invoice_id,
            "candidate_invoice_id": invoice.candidate_invoice_id,
        }
        for invoice in result.invoices
    ]
    lines = [
        {**_line_json(invoice, line, digits[invoice.currency]), "group": line.group}
        for invoice in result.invoices
        for line in invoice.lines
    ]
    plans = [
        {
            "plan_id": plan.plan_id,
            "period": plan.period,
            "currency": plan.currency,
            "invoices": plan.invoices,
            **_measures(plan, digits[plan.currency]),
        }
        for plan in result.plans
    ]
    return [
        _write_rows(folder / "invoices.csv", INVOICE_COLUMNS, invoices),
        _write_rows(folder / "lines.csv", LINE_COLUMNS, lines),
        _write_rows(folder / "plans.csv", PLAN_COLUMNS, plans),
    ]


# ---------------------------------------------------------------- charts

BASELINE_COLOR, CANDIDATE_COLOR, AXIS_COLOR = "#8a97a6", "#3b6fb6", "#5d6b7a"
SPREAD_LIMIT = 100  # per-invoice changes beyond +-100 % are drawn in the edge bins


@dataclass(frozen=True)
class Chart:
    title: str
    caption: str
    png_data_uri: str
    width: int
    height: int


def _figure(width: int, height: int) -> tuple[Figure, Any]:
    figure = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="white")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        axes.spines[side].set_color(AXIS_COLOR)
    axes.tick_params(labelsize=8, colors=AXIS_COLOR)
    return figure, axes


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    # no "Software" text chunk: the bytes are the pixels only, the same on every run
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def revenue_chart(result: BacktestResult, currency: str) -> Chart:
    """Baseline and candidate subtotals of one currency per close month, side by side."""
    months = [m for m in result.month_totals if m.currency == currency]
    width = max(420, min(900, 120 + 48 * len(months)))
    figure, axes = _figure(width, 240)
    xs = list(range(len(months)))
    # float only to place bars in pixels: every figure printed in the report is a Decimal
    baseline = [float(m.baseline) for m in months]
    candidate = [float(m.candidate) for m in months]
    axes.bar([x - 0.2 for x in xs], baseline, 0.38, color=BASELINE_COLOR, label="baseline")
    axes.bar([x + 0.2 for x in xs], candidate, 0.38, color=CANDIDATE_COLOR, label="candidate")
    slanted = {"rotation": 45, "ha": "right"} if len(months) > 12 else {}
    axes.set_xticks(xs, [m.period for m in months], **slanted)
    axes.set_ylabel(currency, fontsize=8, color=AXIS_COLOR)
    axes.yaxis.set_major_formatter(StrMethodFormatter("{x:,.12g}"))
    axes.axhline(0, color=AXIS_COLOR, linewidth=0.6)
    # above the bars, never over them
    axes.legend(fontsize=8, frameon=False, ncols=2, loc="lower right", bbox_to_anchor=(1, 1))
    figure.tight_layout()
    total = result.currency_totals[currency]
    digits = result.exponents[currency]
    caption = (
        f"Subtotals per close month in {currency}: baseline "
        f"{amount_text(total.baseline, digits)}, candidate "
        f"{amount_text(total.candidate, digits)} over {len(months)} months"
    )
    return Chart(f"Revenue per month, {currency}", caption, _png(figure), width, 240)


def spread_chart(result: BacktestResult) -> Chart:
    """A histogram of the per-invoice percent change (a ratio: every currency together)."""
    percents = [i.percent for i in result.invoices if i.percent is not None]
    unmeasured = len(result.invoices) - len(percents)
    beyond = sum(1 for p in percents if abs(p) > SPREAD_LIMIT)
    # float only to place bars in pixels; clipped so a few outliers leave the rest readable
    values = [max(-SPREAD_LIMIT, min(SPREAD_LIMIT, float(p))) for p in percents]
    figure, axes = _figure(560, 240)
    # bins 5 points wide centred on multiples of 5: "unchanged" is the bin around 0 and the
    # clipped outliers fill the bins around -100 and +100
    edges = [5 * k - 2.5 for k in range(-SPREAD_LIMIT // 5, SPREAD_LIMIT // 5 + 2)]
    if values:
        axes.hist(values, bins=edges, color=CANDIDATE_COLOR)
    axes.set_xlim(edges[0], edges[-1])
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("change of the invoice subtotal, % of baseline", fontsize=8, color=AXIS_COLOR)
    axes.set_ylabel("invoices", fontsize=8, color=AXIS_COLOR)
    axes.axvline(0, color=AXIS_COLOR, linewidth=0.6)
    figure.tight_layout()
    unchanged = sum(1 for p in percents if p == 0)
    caption = f"{len(percents)} invoices, {unchanged} unchanged"
    if beyond:
        caption += f"; {beyond} beyond ±{SPREAD_LIMIT}% drawn in the edge bins"
    if unmeasured:
        caption += f"; {unmeasured} with a baseline of 0 and no percentage, not drawn"
    return Chart("Spread of per-invoice change", caption, _png(figure), 560, 240)


# ---------------------------------------------------------------- HTML


def _row(row: Any, exponent: int) -> dict[str, Any]:
    measured = _measures(row, exponent)
    return {
        "baseline": measured["baseline"],
        "candidate": measured["candidate"],
        "difference": _signed(measured["difference"]),
        "percent": _signed(measured["percent"]) if row.percent is not None else "n/a",
        "direction": "up" if row.difference > 0 else "down" if row.difference < 0 else "",
    }


def _side(in_baseline: bool, in_candidate: bool) -> str:
    if in_baseline and in_candidate:
        return ""
    return "candidate only" if in_candidate else "baseline only"


def html_context(result: BacktestResult) -> dict[str, Any]:
    digits = result.exponents
    changed_lines = [
        {
            "invoice": invoice,
            "line": line,
            "side": _side(line.in_baseline, line.in_candidate),
            **_row(line, digits[invoice.currency]),
        }
        for invoice in result.invoices
        for line in invoice.lines
        if line.difference != 0 or line.in_baseline != line.in_candidate
    ]
    return {
        "title": f"Price backtest {result.first} to {result.last}",
        "result": result,
        "changed": len(result.changed_invoices),
        "totals": [
            {"total": total, **_row(total, digits[code])}
            for code, total in result.currency_totals.items()
        ],
        "revenue_charts": [revenue_chart(result, code) for code in result.currency_totals],
        "spread_chart": spread_chart(result) if result.invoices else None,
        "plans": [{"plan": plan, **_row(plan, digits[plan.currency])} for plan in result.plans],
        "movers": [
            {
                "currency": code,
                "up": [{"mover": m, **_row(m, digits[code])} for m in movers.up],
                "down": [{"mover": m, **_row(m, digits[code])} for m in movers.down],
            }
            for code, movers in result.movers.items()
        ],
        "invoices": [
            {
                "invoice": invoice,
                "side": _side(invoice.in_baseline, invoice.in_candidate),
                "plan_text": _plan_text(invoice),
                **_row(invoice, digits[invoice.currency]),
            }
            for invoice in result.invoices
        ],
        "changed_lines": changed_lines,
    }


def _plan_text(invoice: InvoiceChange) -> str:
    base, cand = invoice.baseline_plan_id, invoice.candidate_plan_id
    if invoice.in_baseline and invoice.in_candidate and base != cand:
        return f"{base or '–'} → {cand or '–'}"
    return invoice.plan_id or ""


def render_html(result: BacktestResult) -> str:
    """The report: one self-contained page (charts are data: PNGs), every text escaped."""
    return _ENV.get_template("backtest.html").render(**html_context(result))


def write_html(result: BacktestResult, path: Path) -> Path:
    path = Path(path)
    path.write_text(render_html(result), encoding="utf-8")
    return path


def write_all(result: BacktestResult, folder: Path) -> dict[str, Path]:
    """results.json, invoices.csv, lines.csv, plans.csv and report.html in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(result, folder / "results.json")}
    for path in write_csv(result, folder):
        paths[path.stem] = path
    paths["html"] = write_html(result, folder / "report.html")
    return paths


# ---------------------------------------------------------------- terminal


def text_summary(result: BacktestResult) -> str:
    """A few lines for the terminal: per currency the totals and the largest moves."""
    invoices = result.invoices
    only_candidate = sum(1 for i in invoices if i.in_candidate and not i.in_baseline)
    only_baseline = sum(1 for i in invoices if i.in_baseline and not i.in_candidate)
    head = (
        f"Backtest {result.first} to {result.last}: {len(invoices)} invoices, "
        f"{len(result.changed_invoices)} change"
    )
    if only_candidate or only_baseline:
        head += f" ({only_candidate} only in the candidate, {only_baseline} only in the baseline)"
    out = [head]
    for code, total in result.currency_totals.items():
        digits = result.exponents[code]
        row = _row(total, digits)
        percent = f" ({row['percent']}%)" if total.percent is not None else ""
        out.append(
            f"  {code}: baseline {row['baseline']}, candidate {row['candidate']}, "
            f"difference {row['difference']}{percent}"
        )
        movers = result.movers.get(code, Movers(up=(), down=()))
        for label, chosen in (("up", movers.up), ("down", movers.down)):
            if chosen:
                out.append(f"    largest move {label}: {_mover_text(chosen[0], digits)}")
    return "\n".join(out) + "\n"


def _mover_text(mover: Mover, digits: int) -> str:
    row = _row(mover, digits)
    percent = f" ({row['percent']}%)" if mover.percent is not None else ""
    return f"{mover.customer_id} {row['difference']} {mover.currency}{percent}"
