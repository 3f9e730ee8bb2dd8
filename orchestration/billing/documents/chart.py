"""The daily usage chart of one meter, as inline SVG (pure: escaped text, no floats)."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from orchestration.billing.documents.text import escape, quantity_text
from orchestration.billing.documents.usage import DailyPoint


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
        label = escape(f"{point.day.isoformat()}: {quantity_text(point.quantity)}")
        bars.append(
            f'<rect x="{x}" y="{base - bar_h}" width="{bar_w}" height="{bar_h}" fill="#3b6fb6">'
            f"<title>{label}</title></rect>"
        )
    last = end - timedelta(days=1)
    caption = (
        f"{title}: peak {quantity_text(top)} a day" if bars else f"{title}: no usage in this period"
    )
    return (
        f'<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(caption)}">'
        f'<line x1="0" y1="{base}" x2="{width}" y2="{base}" stroke="#8a97a6" stroke-width="1"/>'
        f"{''.join(bars)}"
        f'<text x="0" y="{height - 3}" font-size="10" fill="#5d6b7a">{escape(start.isoformat())}</text>'
        f'<text x="{width}" y="{height - 3}" font-size="10" fill="#5d6b7a" text-anchor="end">'
        f"{escape(last.isoformat())}</text></svg>"
        f"<figcaption>{escape(caption)}</figcaption></figure>"
    )
