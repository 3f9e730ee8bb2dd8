"""A grant, the order grants are drawn in, and the share of a line a grant may pay (SPEC 7).

Pure functions over dates and Decimals; nothing here reads the warehouse."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, Decimal

PROMOTIONAL = "promotional"
PAID = "paid"


@dataclass(frozen=True)
class Grant:
    grant_id: str
    customer_id: str
    kind: str  # promotional | paid
    amount: Decimal
    granted_on: date
    expires_on: date | None  # exclusive; None: never
    priority: int = 10
    applies_to: str = "usage"  # usage | all
    source: str = "catalog"  # catalog | plan | rollover | top_up
    subscription_id: str | None = None
    rollover_max: Decimal | None = None  # plan grants given every period that roll over

    def order_key(self) -> tuple:
        """Priority, then earliest expiry (never last), then granted_on, then id."""
        never = self.expires_on is None
        return (self.priority, never, self.expires_on or date.max, self.granted_on, self.grant_id)

    def overlap(self, start: date, end: date) -> tuple[date, date] | None:
        """The days of [start, end) on which the grant is valid, or None."""
        lo = max(start, self.granted_on)
        hi = min(end, self.expires_on) if self.expires_on else end
        return (lo, hi) if lo < hi else None

    def covers(self, start: date, end: date) -> bool:
        return self.overlap(start, end) == (start, end)


@dataclass(frozen=True)
class Span:
    """What a line covers: its days, and for count and sum meters its quantity per local day
    (`daily` is None for other lines: their share is by days). `daily` may hold days outside
    [start, end) (the load reads a day either side, and per meter and group, not per
    segment): only the line's own days count."""

    start: date
    end: date
    daily: tuple[tuple[date, Decimal], ...] | None = field(default=None)

    def share(self, grant: Grant) -> Decimal:
        """The part of the line incurred while `grant` was valid, as a fraction of 1."""
        window = grant.overlap(self.start, self.end)
        if window is None:
            return Decimal(0)
        if window == (self.start, self.end):
            return Decimal(1)
        lo, hi = window
        if self.daily:
            own = [(day, q) for day, q in self.daily if self.start <= day < self.end]
            total = sum((q for _, q in own), Decimal(0))
            if total > 0:
                inside = sum((q for day, q in own if lo <= day < hi), Decimal(0))
                return inside / total
        return Decimal((hi - lo).days) / Decimal((self.end - self.start).days)


def floor_to(amount: Decimal, exponent: int) -> Decimal:
    """Rounded down to the minor unit (what a grant may pay is never rounded up)."""
    return amount.quantize(Decimal(1).scaleb(-exponent), rounding=ROUND_FLOOR)


def drawing_order(grants: list[Grant]) -> list[Grant]:
    return sorted(grants, key=Grant.order_key)
