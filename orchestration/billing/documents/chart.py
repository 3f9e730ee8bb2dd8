"""The daily usage chart of one meter: matplotlib (Agg), embedded as a data: PNG.

Drawing a whole figure costs ~60 ms; a close draws two charts per invoice for thousands of
invoices. So the axes of a period (frame, date labels) are drawn once and kept as pixels,
and each chart only restores them and draws its bars as one collection (~3 ms). Bars are scaled to the peak
day, which the caption states in figures: the axis needs no per-chart labels.
Floats appear only as bar heights in pixels; every printed figure is a Decimal.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import matplotlib
import numpy

matplotlib.use("Agg")  # before pyplot can be imported anywhere: never a window
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import PathPatch  # noqa: E402
from matplotlib.path import Path  # noqa: E402
from PIL import Image  # noqa: E402 - matplotlib's own dependency

from orchestration.billing.documents.text import display_quantity, grouped  # noqa: E402
from orchestration.billing.documents.usage import DailyPoint, DailyUsage  # noqa: E402
from orchestration.catalog.models import Catalog  # noqa: E402

# CSS pixels on the page; drawn at 1.5x for print (~144 dpi on paper)
WIDTH_PX, HEIGHT_PX, DPI = 300, 76, 150
BAR_COLOR, AXIS_COLOR = "#3b6fb6", "#8a97a6"


@dataclass(frozen=True)
class Chart:
    title: str
    caption: str
    png_data_uri: str | None  # None: no usage in the period, no picture
    width: int = WIDTH_PX
    height: int = HEIGHT_PX


def usage_chart(
    title: str, points: list[DailyPoint], start: date, end: date, unit: str = ""
) -> Chart:
    """A bar per day of [start, end); `unit` ("× 1,000") follows the peak in the caption."""
    days = max(1, (end - start).days)
    shown = [p for p in points if 0 <= (p.day - start).days < days and p.quantity > 0]
    if not shown:
        return Chart(title, f"{title}: no usage in this period", None)
    top = max(p.quantity for p in shown)
    heights = [0.0] * days
    for point in shown:
        heights[(point.day - start).days] = float(point.quantity / top)  # pixels, not money
    peak = display_quantity(top) + (f" {unit}" if unit else "")
    return Chart(title, f"{title}: peak {peak} a day", _png(_frame(start, days), heights))


class _Frame:
    """One period's axes, drawn once; the bars are redrawn over the kept pixels."""

    def __init__(self, start: date, days: int) -> None:
        size = (WIDTH_PX / 96, HEIGHT_PX / 96)  # inches at the CSS 96 px per inch
        self.figure = Figure(figsize=size, dpi=DPI, facecolor="white")
        self.canvas = FigureCanvasAgg(self.figure)
        axes = self.figure.add_axes((0.01, 0.22, 0.98, 0.76))
        axes.set_xlim(-0.6, days - 0.4)
        axes.set_ylim(0, 1.04)
        axes.set_yticks([])
        last = start + timedelta(days=days - 1)
        axes.set_xticks([0, days - 1], [start.isoformat(), last.isoformat()])
        axes.tick_params(labelsize=7, colors=AXIS_COLOR, length=2)
        first, last_label = axes.get_xticklabels()
        first.set_horizontalalignment("left")  # inside the picture, not cut at its edges
        last_label.set_horizontalalignment("right")
        for side in ("top", "right", "left"):
            axes.spines[side].set_visible(False)
        axes.spines["bottom"].set_color(AXIS_COLOR)
        self.axes = axes
        # every bar is a closed part of one path, drawn in one call (a patch per bar: ~30x)
        self.bars = PathPatch(Path([(0, 0)]), facecolor=BAR_COLOR, linewidth=0, animated=True)
        axes.add_patch(self.bars)
        self.canvas.draw()
        self.background = self.canvas.copy_from_bbox(self.figure.bbox)


@lru_cache(maxsize=16)  # a close has one or a few period shapes
def _frame(start: date, days: int) -> _Frame:
    return _Frame(start, days)


def _bars_path(heights: list[float]) -> Path:
    """A rectangle per day with usage: day x spans x +- 0.4, from 0 up to its height."""
    days = numpy.flatnonzero(heights)
    tops = numpy.asarray(heights)[days]
    corners = numpy.zeros((len(days), 5, 2))
    corners[:, [0, 1, 4], 0] = (days - 0.4)[:, None]
    corners[:, [2, 3], 0] = (days + 0.4)[:, None]
    corners[:, [1, 2], 1] = tops[:, None]
    codes = numpy.tile(
        [Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY], len(days)
    )
    return Path(corners.reshape(-1, 2), codes)


def _png(frame: _Frame, heights: list[float]) -> str:
    frame.canvas.restore_region(frame.background)
    frame.bars.set_path(_bars_path(heights))
    frame.axes.draw_artist(frame.bars)
    size = frame.canvas.get_width_height()
    image = Image.frombuffer("RGBA", size, frame.canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    buffer = io.BytesIO()
    # a few colours, no alpha: a third of the bytes to compress (and no PDF mask image);
    # 32 colours keep the antialiased labels smooth
    paletted = image.convert("RGB").quantize(
        32, Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE
    )
    paletted.save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_ADDITIVE = ("count", "sum", "count_unique")
# A page has room for this many charts beside a dozen lines (and each costs ~2 ms: a plan
# with 20 meters would otherwise draw 200,000 charts for 10,000 invoices).
MAX_CHARTS = 4


def usage_meters(invoice: dict[str, Any]) -> list[str]:
    codes = [line["meter"] for line in invoice["lines"] if line["kind"] == "usage"]
    return list(dict.fromkeys(code for code in codes if code))


def charted_meters(invoice: dict[str, Any]) -> list[str]:
    """The usage meters that get a chart: all, or the MAX_CHARTS billing the most, in line order."""
    meters = usage_meters(invoice)
    if len(meters) <= MAX_CHARTS:
        return meters
    billed = dict.fromkeys(meters, Decimal(0))
    for line in invoice["lines"]:
        if line["kind"] == "usage" and line["meter"]:
            billed[line["meter"]] += abs(Decimal(line["amount"]))
    largest = sorted(meters, key=lambda code: (-billed[code], meters.index(code)))[:MAX_CHARTS]
    return [code for code in meters if code in largest]


def invoice_charts(usage: DailyUsage, catalog: Catalog, invoice: dict[str, Any]) -> list[Chart]:
    """A chart per charted usage meter, in line order, in the lines' units."""
    meters = charted_meters(invoice)
    if not meters or not usage.available:
        return []
    start = date.fromisoformat(invoice["period_start"])
    end = date.fromisoformat(invoice["period_end"])
    charts = []
    for code in meters:
        meter = catalog.find_meter(code)
        additive = meter is None or meter.aggregation in _ADDITIVE
        points = usage.points(invoice["customer_id"], code, start, end, additive)
        if meter is not None and meter.unit is not None:
            # the line's units (per 1k tokens...), unrounded: the chart is for reading only
            points = [DailyPoint(p.day, p.quantity / meter.unit.divide_by) for p in points]
        divide_by = meter.unit.divide_by if meter and meter.unit else Decimal(1)
        unit = f"× {grouped(divide_by)}" if divide_by != 1 else ""
        charts.append(usage_chart(meter.display_name if meter else code, points, start, end, unit))
    return charts
