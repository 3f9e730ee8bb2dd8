"""A close month's wallet entries (SPEC 7), from earlier entries, the catalog's grants and the
month's draft invoices. Pure: `load.py` reads the inputs, the dbt models write the outputs.

Per billing customer, in this order:
1. the wallet as earlier closes left it (the sum of their entries, grant by grant);
2. grants this close makes: one-off grants of the catalog whose granted_on falls before the
   close's horizon (promotional) or on one of its invoices (paid: bought there as a
   `credit_purchase` line); plan grants of the invoices' periods (`every: period`) and of a
   subscription's first invoice (`every: start`); catalog grants removed from the catalog are
   voided;
3. draws (`draw.py`);
4. expiry of every grant whose `expires_on` is at or before the horizon, rolling over
   `rollover.max` of a periodic plan grant into the next period first; a grant that a period
   not yet billed can still draw on (`CloseInputs.unbilled`) waits for the close billing it;
5. one auto top-up at most, when the paid balance left is below its threshold.

The horizon is the latest period end of the customer's invoices in the close (the first day
of the next month when it has none): no later invoice can be paid by a grant that ended
before it, and none earlier can use one given after it.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from decimal import Decimal

from orchestration.billing.periods import Anchor, Interval, period_containing
from orchestration.billing.wallets.draw import (
    Invoice,
    InvoiceDraws,
    Line,
    cover_credit_priced,
    draw_customer,
)
from orchestration.billing.wallets.grants import PAID, PROMOTIONAL, Grant, Span

ZERO = Decimal(0)


@dataclass(frozen=True)
class PlanGrant:
    code: str
    kind: str
    amount: Decimal
    every: str  # start | period
    expires_after_days: int | None = None
    rollover_max: Decimal | None = None
    priority: int = 10
    applies_to: str = "usage"


@dataclass(frozen=True)
class CloseInvoice:
    invoice_id: str
    customer_id: str
    subscription_id: str
    currency: str
    exponent: int
    tax_rate: Decimal
    period_start: date
    period_end: date
    next_period_end: date | None = None  # None: the subscription ends with this period
    regular: bool = True  # False: an invoice made only to carry adjustments
    start_date: date | None = None  # the subscription's
    plan_grants: tuple[PlanGrant, ...] = ()  # of the version in force in the period
    top_up: tuple[Decimal, Decimal] | None = None  # (below, amount)
    lines: tuple[Line, ...] = ()

    def sort_key(self) -> tuple:
        return (self.subscription_id, self.period_start, self.invoice_id)


@dataclass(frozen=True)
class Entry:
    close_month: str
    entry_type: str  # grant | draw | expire | rollover | void
    customer_id: str
    grant_id: str
    grant_kind: str
    amount: Decimal  # signed: what the entry does to the grant's balance
    entry_date: date
    currency: str
    invoice_id: str | None = None
    line_id: str | None = None  # the invoice line: credit_purchase, promotional_credit
    charge_line_id: str | None = None  # the line a promotional draw paid for
    grant: Grant | None = None  # grant entries: the grant itself

    @property
    def entry_id(self) -> str:
        parts = [self.close_month, self.entry_type, self.grant_id]
        parts += [self.invoice_id or "", self.charge_line_id or "", self.line_id or ""]
        return "we_" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:24]


# the invoice line kinds the wallet close makes (registered in the seed line_kinds)
CREDIT_LINE_KINDS = ("promotional_credit", "credit_purchase")


@dataclass(frozen=True)
class CreditLine:
    invoice_id: str
    line_id: str
    kind: str  # one of CREDIT_LINE_KINDS
    grant: Grant
    amount: Decimal


@dataclass
class CloseResult:
    entries: list[Entry] = field(default_factory=list)
    lines: list[CreditLine] = field(default_factory=list)
    credits_applied: dict[str, Decimal] = field(default_factory=dict)  # invoice_id -> paid


def credit_line_id(invoice_id: str, kind: str, grant_id: str) -> str:
    key = f"{invoice_id}|{kind}|{grant_id}"
    return "li_" + hashlib.sha256(key.encode()).hexdigest()[:24]


@dataclass
class Wallet:
    """One customer's grants and balances as a close sees them."""

    customer_id: str
    grants: dict[str, Grant] = field(default_factory=dict)
    balances: dict[str, Decimal] = field(default_factory=dict)

    def apply(self, entry: Entry) -> None:
        if entry.grant is not None:
            self.grants[entry.grant_id] = entry.grant
        self.balances[entry.grant_id] = self.balances.get(entry.grant_id, ZERO) + entry.amount

    def usable(self) -> list[Grant]:
        return [g for gid, g in self.grants.items() if self.balances.get(gid, ZERO) > 0]


def wallets_from(entries: list[Entry]) -> dict[str, Wallet]:
    wallets: dict[str, Wallet] = {}
    for entry in entries:
        wallets.setdefault(entry.customer_id, Wallet(entry.customer_id)).apply(entry)
    return wallets


@dataclass
class CloseInputs:
    close_month: str
    month_end: date  # the first day of the next month
    prior: list[Entry]  # entries of earlier close months
    catalog_grants: list[Grant]  # one-off grants, by billing customer
    invoices: list[CloseInvoice]
    currencies: dict[str, str] = field(default_factory=dict)  # customer -> currency
    # customer -> each subscription's days from its first period no close up to this one
    # bills to its end (`unbilled_days`): the periods still to draw on the customer's grants
    unbilled: dict[str, list[tuple[date, date | None]]] = field(default_factory=dict)
    _by_customer: dict | None = field(default=None, repr=False)
    _grants_by_customer: dict | None = field(default=None, repr=False)

    def by_customer(self) -> dict[str, list[CloseInvoice]]:
        """Each customer's invoices in drawing order (computed once: thousands of customers)."""
        if self._by_customer is None:
            out: dict[str, list[CloseInvoice]] = defaultdict(list)
            for inv in sorted(self.invoices, key=CloseInvoice.sort_key):
                out[inv.customer_id].append(inv)
            self._by_customer = dict(out)
        return self._by_customer

    def grants_of(self, customer_id: str) -> list[Grant]:
        if self._grants_by_customer is None:
            out: dict[str, list[Grant]] = defaultdict(list)
            for grant in self.catalog_grants:
                out[grant.customer_id].append(grant)
            self._grants_by_customer = dict(out)
        return self._grants_by_customer.get(customer_id, [])

    def customers(self) -> list[str]:
        """Customers with a wallet, a grant to make, or an invoice whose plan grants credits
        or that has an auto top-up (an empty wallet is below any threshold): the others have
        nothing to draw, and their invoices stay exactly as rated."""
        ids = {g.customer_id for g in self.catalog_grants} | {e.customer_id for e in self.prior}
        return sorted(
            ids | {i.customer_id for i in self.invoices if i.plan_grants or i.top_up is not None}
        )


def unbilled_days(
    month_end: date,
    interval: Interval,
    anchor: Anchor,
    start_date: date,
    end_date: date | None,
) -> tuple[date, date | None] | None:
    """The days `[start, end)` of a subscription that the closes up to the month ending on
    `month_end` do not bill: from its first period whose last active day is on or after
    `month_end` (SPEC 3.3: a close bills the periods whose last day falls in its month) to
    the subscription's end. None when every period is billed."""
    first = max(month_end, start_date)
    if end_date is not None and end_date <= first:
        return None
    period = period_containing(first, interval, anchor, start_date)
    return (max(period.start, start_date), end_date)


class _Customer:
    """The close of one customer's wallet: what it grants, draws, expires and tops up."""

    def __init__(self, inputs: CloseInputs, customer_id: str, wallet: Wallet):
        self.inputs = inputs
        self.month = inputs.close_month
        self.customer_id = customer_id
        self.invoices = inputs.by_customer().get(customer_id, [])
        self.wallet = wallet
        self.currency = (
            self.invoices[0].currency if self.invoices else inputs.currencies.get(customer_id, "")
        )
        ends = [inv.period_end for inv in self.invoices]
        self.horizon = max(ends) if ends else inputs.month_end
        self.entries: list[Entry] = []
        self.purchases: dict[str, list[Grant]] = defaultdict(list)  # invoice_id -> bought

    def record(self, entry_type: str, of: Grant, amount: Decimal, day: date, **kw) -> None:
        entry = Entry(
            self.month,
            entry_type,
            self.customer_id,
            of.grant_id,
            of.kind,
            amount,
            day,
            self.currency,
            **kw,
        )
        self.entries.append(entry)
        self.wallet.apply(entry)

    def make_grants(self) -> None:
        known = self.wallet.grants
        catalog = self.inputs.grants_of(self.customer_id)
        for grant in sorted(catalog, key=lambda g: g.grant_id):
            if grant.grant_id in known:
                continue
            if grant.kind == PROMOTIONAL and grant.granted_on < self.horizon:
                self.record("grant", grant, grant.amount, grant.granted_on, grant=grant)
            elif grant.kind == PAID and (invoice := self._buyer(grant)) is not None:
                self._buy(grant, invoice)
        present = {g.grant_id for g in catalog}
        for gid, grant in sorted(known.items()):
            left = self.wallet.balances.get(gid, ZERO)
            if grant.source == "catalog" and gid not in present and left > 0:
                self.record("void", grant, -left, self.inputs.month_end - timedelta(days=1))
        for inv in self.invoices:
            if inv.regular:
                self._plan_grants(inv)
        for _gid, grant in sorted(known.items()):
            if grant.source == "top_up" and (invoice := self._containing(grant)) is not None:
                self._buy(grant, invoice, record=False)

    def _plan_grants(self, inv: CloseInvoice) -> None:
        for spec in inv.plan_grants:
            if spec.every == "period":
                gid, start, end = (
                    f"{inv.subscription_id}:{spec.code}:{inv.period_start}",
                    inv.period_start,
                    inv.period_end,
                )
            else:
                gid, start = (
                    f"{inv.subscription_id}:{spec.code}",
                    inv.start_date or inv.period_start,
                )
                end = (
                    start + timedelta(days=spec.expires_after_days)
                    if spec.expires_after_days
                    else None
                )
            if gid in self.wallet.grants:
                continue
            grant = Grant(
                gid, self.customer_id, spec.kind, spec.amount, start, end, spec.priority,
                spec.applies_to, "plan", inv.subscription_id,
                spec.rollover_max if spec.every == "period" else None,
            )  # fmt: skip
            if grant.kind == PAID:
                self._buy(grant, inv)
            else:
                self.record("grant", grant, grant.amount, grant.granted_on, grant=grant)

    def _buyer(self, grant: Grant) -> CloseInvoice | None:
        """The invoice a catalog grant is bought on: the one whose period holds granted_on,
        or the first when the grant predates them all (never a later close's)."""
        if (found := self._containing(grant)) is not None:
            return found
        regular = [i for i in self.invoices if i.regular]
        if regular and grant.granted_on < min(i.period_start for i in regular):
            return min(regular, key=lambda i: (i.period_start, i.sort_key()))
        return None

    def _containing(self, grant: Grant) -> CloseInvoice | None:
        for inv in self.invoices:
            same = grant.subscription_id in (None, inv.subscription_id)
            if inv.regular and same and inv.period_start <= grant.granted_on < inv.period_end:
                return inv
        return None

    def _buy(self, grant: Grant, inv: CloseInvoice, record: bool = True) -> None:
        self.purchases[inv.invoice_id].append(grant)
        if record:
            line = credit_line_id(inv.invoice_id, "credit_purchase", grant.grant_id)
            self.record(
                "grant",
                grant,
                grant.amount,
                grant.granted_on,
                grant=grant,
                invoice_id=inv.invoice_id,
                line_id=line,
            )

    def draw(
        self, coverage: dict[tuple[str, str], list[tuple[str, Decimal]]]
    ) -> list[InvoiceDraws]:
        invoices = [
            Invoice(
                inv.invoice_id,
                inv.subscription_id,
                inv.exponent,
                inv.tax_rate,
                tuple(
                    replace(ln, covered=tuple(coverage.get((inv.invoice_id, ln.line_id), ())))
                    for ln in inv.lines
                ),
                tuple(self.purchases.get(inv.invoice_id, ())),
            )  # fmt: skip
            for inv in self.invoices
        ]
        balances = {gid: b for gid, b in self.wallet.balances.items()}
        results = draw_customer(invoices, self.wallet.usable(), balances)
        ends = {inv.invoice_id: inv.period_end for inv in self.invoices}
        for result in results:
            iid = result.invoice.invoice_id
            for gid, charge_line, amount in result.promotional:
                line = credit_line_id(iid, "promotional_credit", gid)
                self.record(
                    "draw",
                    self.wallet.grants[gid],
                    -amount,
                    ends[iid],
                    invoice_id=iid,
                    line_id=line,
                    charge_line_id=charge_line,
                )
            for gid, amount in result.paid:
                self.record("draw", self.wallet.grants[gid], -amount, ends[iid], invoice_id=iid)
        return results

    def drawable_later(self, grant: Grant) -> bool:
        """Whether a period no close has billed yet holds days the grant is valid on: it then
        expires in the close billing that period, after its draws. A periodic plan grant
        that rolls over is settled with its own period (its rollover starts the next)."""
        if grant.rollover_max is not None or grant.expires_on is None:
            return False
        return any(
            start < grant.expires_on and (end is None or grant.granted_on < end)
            for start, end in self.inputs.unbilled.get(self.customer_id, ())
        )

    def expire(self) -> None:
        next_end = {inv.invoice_id: inv.next_period_end for inv in self.invoices}
        by_period = {(i.subscription_id, i.period_start): i for i in self.invoices}
        for gid, grant in sorted(self.wallet.grants.items()):
            left = self.wallet.balances.get(gid, ZERO)
            if left <= 0 or grant.expires_on is None or grant.expires_on > self.horizon:
                continue
            if self.drawable_later(grant):
                continue
            inv = by_period.get((grant.subscription_id, grant.granted_on))
            end = next_end.get(inv.invoice_id) if inv else None
            carry = (
                min(left, grant.rollover_max) if grant.rollover_max is not None and end else ZERO
            )
            if carry > 0:
                self.record("rollover", grant, -carry, grant.expires_on)
                new = Grant(
                    f"{gid}:rollover", self.customer_id,
                    grant.kind, carry, grant.expires_on, end, grant.priority, grant.applies_to,
                    "rollover", grant.subscription_id,
                )  # fmt: skip
                self.record("grant", new, carry, new.granted_on, grant=new)
            if left - carry > 0:
                self.record("expire", grant, -(left - carry), grant.expires_on)

    def top_up(self) -> None:
        for inv in self.invoices:
            if inv.top_up is None or not inv.regular or inv.next_period_end is None:
                continue
            below, amount = inv.top_up
            paid = sum(
                (
                    b
                    for gid, b in self.wallet.balances.items()
                    if self.wallet.grants[gid].kind == PAID and b > 0
                ),
                ZERO,
            )
            if paid < below:
                grant = Grant(
                    f"topup:{inv.subscription_id}:{inv.period_end}", self.customer_id, PAID, amount,
                    inv.period_end, None, 10, "all", "top_up", inv.subscription_id,
                )  # fmt: skip
                self.record("grant", grant, amount, grant.granted_on, grant=grant)
            return  # at most one per close


def credit_coverage(
    inputs: CloseInputs, usage: list[tuple[str, str, Decimal, Decimal, Span]]
) -> dict:
    """Units of each credit-priced usage line (invoice, key, billable quantity, credit_price,
    span) that promotional credits cover, per grant: {(invoice_id, key): [(grant, units)]}."""
    wallets = wallets_from(inputs.prior)
    out: dict[tuple[str, str], list[tuple[str, Decimal]]] = {}
    by_invoice = {inv.invoice_id: inv for inv in inputs.invoices}
    per_customer: dict[str, list] = defaultdict(list)
    for invoice_id, key, quantity, price, span in usage:
        inv = by_invoice[invoice_id]
        per_customer[inv.customer_id].append(
            (inv.sort_key(), (invoice_id, key), quantity, price, span)
        )
    for customer_id, rows in per_customer.items():
        close = _Customer(inputs, customer_id, wallets.get(customer_id) or Wallet(customer_id))
        close.make_grants()
        rows.sort(key=lambda r: r[0])
        lines = [(key, quantity, price, span) for _, key, quantity, price, span in rows]
        out.update(cover_credit_priced(lines, close.wallet.usable(), close.wallet.balances))
    return out


def close_wallets(inputs: CloseInputs, coverage: dict | None = None) -> CloseResult:
    """Every wallet entry, credit line and paid credit of the close month."""
    wallets = wallets_from(inputs.prior)
    result = CloseResult()
    for customer_id in inputs.customers():
        close = _Customer(inputs, customer_id, wallets.get(customer_id) or Wallet(customer_id))
        close.make_grants()
        draws = close.draw(coverage or {})
        close.expire()
        close.top_up()
        result.entries.extend(close.entries)
        for inv_draws in draws:
            iid = inv_draws.invoice.invoice_id
            for grant in inv_draws.invoice.purchases:
                line = credit_line_id(iid, "credit_purchase", grant.grant_id)
                result.lines.append(CreditLine(iid, line, "credit_purchase", grant, grant.amount))
            for gid, amount in inv_draws.promotional_by_grant().items():
                line = credit_line_id(iid, "promotional_credit", gid)
                result.lines.append(
                    CreditLine(iid, line, "promotional_credit", close.wallet.grants[gid], -amount)
                )
            if inv_draws.credits_applied:
                result.credits_applied[iid] = inv_draws.credits_applied
    return result
