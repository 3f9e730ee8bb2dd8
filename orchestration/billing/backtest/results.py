"""The price backtest's comparison: baseline and candidate invoices side by side (SPEC 10). Pure.

The engine re-rates months M1..M2 under the current catalog (the baseline) and under a
candidate catalog, and hands over both as SPEC 5 invoices (string amounts), each tagged with
its close month (`"period"`, "YYYY-MM") and the subscription's plan in that catalog
(`"plan_id"`). Here they are matched and measured, in Decimal only:

- invoices match on (subscription_id, period, currency); an invoice on one side only counts
  0 on the other (a candidate can add or drop subscriptions), and a subscription billed in
  another currency by the candidate is two rows, one per currency: two currencies are never
  added or subtracted;
- lines match on their charge: kind, meter, fee_code and group (canonical JSON); where one
  invoice pair holds several lines of the same charge (the segments of a plan change, a fee
  billed for this period and in advance for the next) also on their period_start and
  period_end, as `line_id` is made (`int_billing_lines.sql`); line ids differ between runs;
- difference = candidate - baseline; percent = difference / |baseline| x 100, half-up to two
  decimals (so it has the sign of the difference, also on negative discount lines);
  "0.00" when both are 0, None (JSON null) when only the baseline is 0;
- amounts keep the currency's minor digits: those the input strings carry (never fewer than
  ISO 4217's), or the exponents the caller passes.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from orchestration.billing.money import minor_exponent
from orchestration.billing.month import BillingMonth

__all__ = [
    "MOVERS",
    "BacktestResult",
    "CurrencyTotal",
    "InvoiceChange",
    "LineChange",
    "MonthTotal",
    "Mover",
    "Movers",
    "PlanMonth",
    "compare",
    "percent_change",
]

MOVERS = 10  # customers listed per direction and currency


@dataclass(frozen=True)
class LineChange:
    """One charge of one invoice pair. `group` is canonical JSON text (None: no group)."""

    kind: str
    meter: str | None
    fee_code: str | None
    group: str | None
    period_start: str | None
    period_end: str | None
    description: str | None
    in_baseline: bool
    in_candidate: bool
    baseline: Decimal
    candidate: Decimal
    difference: Decimal
    percent: Decimal | None

    @property
    def group_value(self) -> Any:
        """The group as the invoice JSON has it (an object, or None)."""
        return None if self.group is None else json.loads(self.group)

    @property
    def changed(self) -> bool:
        return self.difference != 0 or self.in_baseline != self.in_candidate


@dataclass(frozen=True)
class InvoiceChange:
    """One subscription's invoice of one close month, baseline against candidate (subtotals)."""

    period: str
    customer_id: str
    subscription_id: str
    currency: str
    plan_id: str | None  # the baseline's plan; the candidate's when the baseline has none
    baseline_plan_id: str | None
    candidate_plan_id: str | None
    baseline_invoice_id: str | None
    candidate_invoice_id: str | None
    baseline: Decimal
    candidate: Decimal
    difference: Decimal
    percent: Decimal | None
    lines: tuple[LineChange, ...]

    @property
    def in_baseline(self) -> bool:
        return self.baseline_invoice_id is not None

    @property
    def in_candidate(self) -> bool:
        return self.candidate_invoice_id is not None

    @property
    def changed(self) -> bool:
        return self.difference != 0 or self.in_baseline != self.in_candidate


@dataclass(frozen=True)
class CurrencyTotal:
    currency: str
    invoices: int
    baseline: Decimal
    candidate: Decimal
    difference: Decimal
    percent: Decimal | None


@dataclass(frozen=True)
class MonthTotal:
    """One currency's subtotals of one close month (every month of the range, 0 if none)."""

    period: str
    currency: str
    invoices: int
    baseline: Decimal
    candidate: Decimal
    difference: Decimal
    percent: Decimal | None


@dataclass(frozen=True)
class PlanMonth:
    plan_id: str | None
    period: str
    currency: str
    invoices: int
    baseline: Decimal
    candidate: Decimal
    difference: Decimal
    percent: Decimal | None


@dataclass(frozen=True)
class Mover:
    """One customer's invoices of one currency over the whole range."""

    customer_id: str
    currency: str
    invoices: int
    baseline: Decimal
    candidate: Decimal
    difference: Decimal
    percent: Decimal | None


@dataclass(frozen=True)
class Movers:
    up: tuple[Mover, ...]  # largest increase first, ties by customer_id
    down: tuple[Mover, ...]  # largest decrease first, ties by customer_id


@dataclass(frozen=True)
class BacktestResult:
    first: str  # "YYYY-MM", the first close month re-rated
    last: str
    months: tuple[str, ...]  # first..last
    exponents: Mapping[str, int]  # the minor digits of each currency's amounts
    currency_totals: Mapping[str, CurrencyTotal]  # by currency code, in code order
    invoices: tuple[InvoiceChange, ...]  # by period, customer_id, subscription_id, currency
    plans: tuple[PlanMonth, ...]  # by plan_id, period, currency
    month_totals: tuple[MonthTotal, ...]  # by currency, period
    movers: Mapping[str, Movers] = field(default_factory=dict)  # by currency code

    @property
    def changed_invoices(self) -> tuple[InvoiceChange, ...]:
        return tuple(invoice for invoice in self.invoices if invoice.changed)


def percent_change(difference: Decimal, baseline: Decimal) -> Decimal | None:
    """difference / |baseline| x 100, half-up (away from zero) to 2 decimals, exactly.

    A fraction, not a Decimal division: no rounding to the context's 28 digits before the
    half-up rounding. Baseline 0: "0.00" when nothing changed, else None (no percentage)."""
    if baseline == 0:
        return Decimal("0.00") if difference == 0 else None
    hundredths = Fraction(difference) * 10000 / abs(Fraction(baseline))
    rounded = math.floor(abs(hundredths) + Fraction(1, 2))
    return Decimal(rounded if hundredths >= 0 else -rounded).scaleb(-2)


def _measure(baseline: Decimal, candidate: Decimal) -> dict[str, Any]:
    difference = candidate - baseline
    return {
        "baseline": baseline,
        "candidate": candidate,
        "difference": difference,
        "percent": percent_change(difference, baseline),
    }


def compare(
    baseline: list[dict],
    candidate: list[dict],
    first: str,
    last: str,
    exponents: Mapping[str, int] | None = None,
) -> BacktestResult:
    """Baseline and candidate invoices of close months first..last ("YYYY-MM"), compared."""
    months = _months(first, last)
    digits = _exponents([*baseline, *candidate], exponents or {})
    base = _by_key(baseline, "baseline", months)
    cand = _by_key(candidate, "candidate", months)
    keys = sorted(
        base.keys() | cand.keys(),
        key=lambda k: (k[1], _customer(base.get(k), cand.get(k)), k[0], k[2]),
    )
    invoices = tuple(_invoice(base.get(key), cand.get(key), digits) for key in keys)
    return BacktestResult(
        first=months[0],
        last=months[-1],
        months=months,
        exponents=dict(sorted(digits.items())),
        currency_totals=_currency_totals(invoices, digits),
        invoices=invoices,
        plans=_plans(invoices, digits),
        month_totals=_month_totals(invoices, months, digits),
        movers=_movers(invoices, digits),
    )


def _months(first: str, last: str) -> tuple[str, ...]:
    months = BillingMonth.parse(first).through(BillingMonth.parse(last))
    if not months:
        raise ValueError(f"the backtest's last month {last} is before its first {first}")
    return tuple(str(month) for month in months)


def _digits(text: str) -> int:
    exponent = Decimal(text).as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def _exponents(invoices: list[dict], given: Mapping[str, int]) -> dict[str, int]:
    """Each currency's minor digits: given, else the most the input strings carry (never
    fewer than ISO 4217's: a hand-written "0" does not make USD whole)."""
    found: dict[str, int] = {}
    for invoice in invoices:
        currency = invoice["currency"]
        amounts = [invoice["subtotal"], *(line["amount"] for line in invoice.get("lines", []))]
        seen = max(_digits(text) for text in amounts)
        found[currency] = max(found.get(currency, minor_exponent(currency)), seen)
    for currency, count in given.items():
        found[currency] = count
    return found


def _amount(text: str, exponent: int, where: str) -> Decimal:
    value = Decimal(text)
    exact = value.quantize(Decimal(1).scaleb(-exponent))
    if exact != value:
        raise ValueError(f"{where}: {text} has more than the currency's {exponent} minor digits")
    return exact


def _by_key(invoices: list[dict], side: str, months: tuple[str, ...]) -> dict[tuple, dict]:
    out: dict[tuple, dict] = {}
    for invoice in invoices:
        period = invoice.get("period")
        if period not in months:
            raise ValueError(
                f"{side} invoice {invoice.get('invoice_id')} is for {period!r}, "
                f"outside the backtest's months {months[0]}..{months[-1]}"
            )
        key = (invoice["subscription_id"], period, invoice["currency"])
        if key in out:
            raise ValueError(
                f"{side} has two invoices of subscription {key[0]} in {period}: "
                f"{out[key].get('invoice_id')} and {invoice.get('invoice_id')}"
            )
        out[key] = invoice
    return out


def _customer(*invoices: dict | None) -> str:
    return next(invoice["customer_id"] for invoice in invoices if invoice is not None)


def _invoice(base: dict | None, cand: dict | None, digits: Mapping[str, int]) -> InvoiceChange:
    either = base if base is not None else cand
    assert either is not None  # a key comes from one side at least
    currency = either["currency"]
    exponent = digits[currency]
    zero = Decimal(0).scaleb(-exponent)

    def subtotal(invoice: dict | None) -> Decimal:
        if invoice is None:
            return zero
        return _amount(invoice["subtotal"], exponent, f"invoice {invoice.get('invoice_id')}")

    base_plan = base.get("plan_id") if base else None
    cand_plan = cand.get("plan_id") if cand else None
    return InvoiceChange(
        period=either["period"],
        customer_id=either["customer_id"],
        subscription_id=either["subscription_id"],
        currency=currency,
        plan_id=base_plan if base is not None else cand_plan,
        baseline_plan_id=base_plan,
        candidate_plan_id=cand_plan,
        baseline_invoice_id=base.get("invoice_id") if base else None,
        candidate_invoice_id=cand.get("invoice_id") if cand else None,
        lines=_lines(base, cand, exponent),
        **_measure(subtotal(base), subtotal(cand)),
    )


def _canonical(group: Any) -> str | None:
    if group is None:
        return None
    return json.dumps(group, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _charge(line: dict) -> tuple:
    return (line["kind"], line.get("meter"), line.get("fee_code"), _canonical(line.get("group")))


def _keyed(lines: list[dict], split: set[tuple]) -> dict[tuple, dict]:
    """Each line under its charge key; a charge in `split` adds its dates, and lines still
    alike (identical twins) their order among themselves."""
    seen: Counter[tuple] = Counter()
    out: dict[tuple, dict] = {}
    for line in lines:
        charge = _charge(line)
        dates = (line.get("period_start"), line.get("period_end")) if charge in split else ()
        key = (*charge, *dates)
        out[(*key, seen[key])] = line
        seen[key] += 1
    return out


def _lines(base: dict | None, cand: dict | None, exponent: int) -> tuple[LineChange, ...]:
    base_lines = base.get("lines", []) if base else []
    cand_lines = cand.get("lines", []) if cand else []
    counts = [Counter(_charge(line) for line in side) for side in (base_lines, cand_lines)]
    split = {charge for count in counts for charge, n in count.items() if n > 1}
    left, right = _keyed(base_lines, split), _keyed(cand_lines, split)
    zero = Decimal(0).scaleb(-exponent)
    out = []
    # the baseline's lines in its order, then those only the candidate has, in its order
    for key in [*left, *(key for key in right if key not in left)]:
        b, c = left.get(key), right.get(key)
        shown = b if b is not None else c
        assert shown is not None
        out.append(
            LineChange(
                kind=shown["kind"],
                meter=shown.get("meter"),
                fee_code=shown.get("fee_code"),
                group=_canonical(shown.get("group")),
                period_start=shown.get("period_start"),
                period_end=shown.get("period_end"),
                description=shown.get("description"),
                in_baseline=b is not None,
                in_candidate=c is not None,
                **_measure(
                    _amount(b["amount"], exponent, f"line {b.get('line_id')}") if b else zero,
                    _amount(c["amount"], exponent, f"line {c.get('line_id')}") if c else zero,
                ),
            )
        )
    return tuple(out)


class _Sum:
    """Running baseline and candidate sums of one currency (Decimal: no float anywhere)."""

    def __init__(self) -> None:
        self.invoices = 0
        self.baseline = Decimal(0)
        self.candidate = Decimal(0)

    def add(self, invoice: InvoiceChange) -> None:
        self.invoices += 1
        self.baseline += invoice.baseline
        self.candidate += invoice.candidate

    def measured(self, exponent: int) -> dict[str, Any]:
        unit = Decimal(1).scaleb(-exponent)  # sums of 0 invoices still print "0.00"
        return {
            "invoices": self.invoices,
            **_measure(self.baseline.quantize(unit), self.candidate.quantize(unit)),
        }


def _currency_totals(
    invoices: tuple[InvoiceChange, ...], digits: Mapping[str, int]
) -> dict[str, CurrencyTotal]:
    sums: dict[str, _Sum] = {}
    for invoice in invoices:
        sums.setdefault(invoice.currency, _Sum()).add(invoice)
    return {
        currency: CurrencyTotal(currency=currency, **sums[currency].measured(digits[currency]))
        for currency in sorted(sums)
    }


def _month_totals(
    invoices: tuple[InvoiceChange, ...], months: tuple[str, ...], digits: Mapping[str, int]
) -> tuple[MonthTotal, ...]:
    currencies = sorted({invoice.currency for invoice in invoices})
    sums = {(currency, month): _Sum() for currency in currencies for month in months}
    for invoice in invoices:
        sums[(invoice.currency, invoice.period)].add(invoice)
    return tuple(
        MonthTotal(
            period=month, currency=currency, **sums[(currency, month)].measured(digits[currency])
        )
        for currency in currencies
        for month in months
    )


def _plans(invoices: tuple[InvoiceChange, ...], digits: Mapping[str, int]) -> tuple[PlanMonth, ...]:
    sums: dict[tuple[str | None, str, str], _Sum] = {}
    for invoice in invoices:
        sums.setdefault((invoice.plan_id, invoice.period, invoice.currency), _Sum()).add(invoice)
    # by plan (an invoice without a plan_id last), month, currency
    order = sorted(sums, key=lambda key: (key[0] is None, key[0] or "", key[1], key[2]))
    rows = []
    for plan, period, currency in order:
        measured = sums[(plan, period, currency)].measured(digits[currency])
        rows.append(PlanMonth(plan_id=plan, period=period, currency=currency, **measured))
    return tuple(rows)


def _movers(
    invoices: tuple[InvoiceChange, ...], digits: Mapping[str, int], top: int = MOVERS
) -> dict[str, Movers]:
    """Per currency, the `top` customers whose subtotals over the range rose most and fell
    most (a customer whose total did not move is in neither)."""
    sums: dict[tuple[str, str], _Sum] = {}
    for invoice in invoices:
        sums.setdefault((invoice.currency, invoice.customer_id), _Sum()).add(invoice)
    out = {}
    for currency in sorted({currency for currency, _ in sums}):
        mine = [
            Mover(customer_id=customer, currency=currency, **total.measured(digits[currency]))
            for (code, customer), total in sums.items()
            if code == currency
        ]
        up = sorted(
            (m for m in mine if m.difference > 0), key=lambda m: (-m.difference, m.customer_id)
        )
        down = sorted(
            (m for m in mine if m.difference < 0), key=lambda m: (m.difference, m.customer_id)
        )
        out[currency] = Movers(up=tuple(up[:top]), down=tuple(down[:top]))
    return out
