"""Rules that relate catalog entries to each other. Each returns (path, message) pairs; a
second definition adds the path of the first, which the loader turns into its file and line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

from orchestration.catalog.api_key_checks import api_key_problems
from orchestration.catalog.currencies import minor_exponent
from orchestration.catalog.entitlement_checks import entitlement_problems
from orchestration.catalog.expressions import ExpressionError, literals_of, parse_expression
from orchestration.catalog.models import (
    Catalog,
    Plan,
    Subscription,
    decimal_problem,
    mail_recipients,
)

Problem = tuple[tuple, str] | tuple[tuple, str, tuple]


def cross_check(catalog: Catalog) -> list[Problem]:
    return [
        *_duplicates(catalog),
        *_meters(catalog),
        *_plans(catalog),
        *_customers(catalog),
        *_subscriptions(catalog),
        *_overlapping_subscriptions(catalog),
        *_credit_grants(catalog),
        *_top_ups(catalog),
        *entitlement_problems(catalog),
        *api_key_problems(catalog),
        *_dunning_recipients(catalog),
    ]


def _duplicates(catalog: Catalog) -> Iterator[Problem]:
    for section, key in (
        ("meters", "code"),
        ("plans", "code"),
        ("customers", "id"),
        ("subscriptions", "id"),
        ("credit_grants", "id"),
        ("features", "code"),
        ("alerts", "code"),
    ):
        first: dict[str, int] = {}
        for i, entry in enumerate(getattr(catalog, section)):
            value = getattr(entry, key)
            if value in first:
                yield (section, i, key), f"{value!r} is defined twice", (section, first[value])
            else:
                first[value] = i


def _meters(catalog: Catalog) -> Iterator[Problem]:
    for i, meter in enumerate(catalog.meters):
        if meter.expression:
            try:
                tree = parse_expression(meter.expression)
            except ExpressionError as exc:
                yield ("meters", i, "expression"), f"cannot parse {meter.expression!r}: {exc}"
                continue
            for literal in literals_of(tree):
                if problem := decimal_problem(literal):
                    # the literal is cast to DECIMAL(38, 12) in every event's value
                    yield ("meters", i, "expression"), f"the literal {problem}"


def _plans(catalog: Catalog) -> Iterator[Problem]:
    meters = {m.code for m in catalog.meters}
    for p, plan in enumerate(catalog.plans):
        for v, version in enumerate(plan.versions):
            for c, charge in enumerate(version.charges):
                if charge.meter not in meters:
                    yield (
                        ("plans", p, "versions", v, "charges", c, "meter"),
                        f"unknown meter {charge.meter!r}",
                    )
        yield from _versions(plan.versions, ("plans", p, "versions"))
        for v, version in enumerate(plan.versions):
            at = ("plans", p, "versions", v)
            yield from _plan_grant_codes(version.credit_grants, at)
            for g, grant in enumerate(version.credit_grants):
                if problem := _sub_minor(grant.amount, plan.currency):
                    yield (*at, "credit_grants", g, "amount"), problem
                if grant.rollover and (problem := _sub_minor(grant.rollover.max, plan.currency)):
                    yield (*at, "credit_grants", g, "rollover", "max"), problem


def _sub_minor(amount, currency: str) -> str | None:
    """Credits are money: an amount finer than the currency's minor unit could never be
    drawn to the last unit (SPEC 3.4)."""
    digits = minor_exponent(currency)
    if amount != amount.quantize(Decimal(1).scaleb(-digits)):
        return f"{amount} has more decimals than {currency} has ({digits})"
    return None


def _plan_grant_codes(grants: list, at: tuple) -> Iterator[Problem]:
    first: dict[str, int] = {}
    for g, grant in enumerate(grants):
        if grant.code in first:
            yield (
                (*at, "credit_grants", g, "code"),
                f"credit grant code {grant.code!r} appears twice in this version",
                (*at, "credit_grants", first[grant.code]),
            )
        else:
            first[grant.code] = g


def _versions(versions: list, at: tuple) -> Iterator[Problem]:
    numbers: dict[int, int] = {}
    dates: dict[date, int] = {}
    for v, version in enumerate(versions):
        if version.version in numbers:
            first = numbers[version.version]
            yield (
                (*at, v, "version"),
                f"version {version.version} appears twice (also versions[{first}])",
            )
        if version.effective_from in dates:
            # two versions in force from the same day: which one prices that day is undefined
            first = dates[version.effective_from]
            yield (
                (*at, v, "effective_from"),
                f"effective_from {version.effective_from} appears twice (also versions[{first}])",
            )
        numbers.setdefault(version.version, v)
        dates.setdefault(version.effective_from, v)
    ordered = [v.effective_from for v in versions]
    if ordered != sorted(ordered):
        yield at, "versions must be listed by effective_from, oldest first"


def _customers(catalog: Catalog) -> Iterator[Problem]:
    by_id = {c.id: c for c in catalog.customers}
    for i, customer in enumerate(catalog.customers):
        if customer.parent_id is None:
            continue
        parent = by_id.get(customer.parent_id)
        if parent is None:
            yield ("customers", i, "parent_id"), f"unknown parent customer {customer.parent_id!r}"
        elif parent.parent_id is not None:
            yield (
                ("customers", i, "parent_id"),
                f"{parent.id!r} is itself a sub-account; nest one level only",
            )


def _subscriptions(catalog: Catalog) -> Iterator[Problem]:
    customers = {c.id: c for c in catalog.customers}
    plans = {p.code: p for p in catalog.plans}
    meters = {m.code for m in catalog.meters}
    for i, sub in enumerate(catalog.subscriptions):
        at = ("subscriptions", i)
        customer = customers.get(sub.customer_id)
        plan = plans.get(sub.plan)
        if customer is None:
            yield (*at, "customer_id"), f"unknown customer {sub.customer_id!r}"
        elif customer.parent_id is not None:
            yield (
                (*at, "customer_id"),
                f"{sub.customer_id!r} is a sub-account; subscribe its parent {customer.parent_id!r}",
            )
        if plan is None:
            yield (*at, "plan"), f"unknown plan {sub.plan!r}"
        elif plan.version_at(sub.start_date) is None:
            yield (
                (*at, "start_date"),
                f"plan {plan.code!r} has no version in force on {sub.start_date}",
            )
        if customer is not None and plan is not None:
            currency = catalog.currency_of(customer)
            if currency != plan.currency:
                yield (
                    (*at, "plan"),
                    f"plan {plan.code!r} is in {plan.currency} but customer {customer.id!r} pays in {currency}",
                )
        yield from _overrides(sub, at, meters)
        if plan is not None:
            yield from _against_plan(sub, at, plan)
        if sub.trial_end is not None and sub.trial_end <= sub.start_date:
            yield (*at, "trial_end"), "trial_end must be after start_date (it is exclusive)"


def _overrides(sub: Subscription, at: tuple, meters: set[str]) -> Iterator[Problem]:
    for o, override in enumerate(sub.price_overrides):
        here = (*at, "price_overrides", o)
        if override.meter not in meters:
            yield (*here, "meter"), f"unknown meter {override.meter!r}"
        start = override.effective_from or sub.start_date
        if start < sub.start_date or (sub.end_date is not None and start >= sub.end_date):
            yield (*here, "effective_from"), "the override starts outside the subscription's dates"
        end = override.effective_to
        if end is not None and (
            end <= sub.start_date or (sub.end_date is not None and end > sub.end_date)
        ):
            yield (*here, "effective_to"), "the override ends outside the subscription's dates"


def _against_plan(sub: Subscription, at: tuple, plan: Plan) -> Iterator[Problem]:
    fees = {f.code for v in plan.versions for f in v.fixed_fees}
    for code in sub.quantities:
        if code not in fees:
            yield (*at, "quantities", code), f"plan {plan.code!r} has no fixed fee {code!r}"
    yield from _overrides_priced(sub, at, plan)


def _overrides_priced(sub: Subscription, at: tuple, plan: Plan) -> Iterator[Problem]:
    """An override replaces the pricing of a plan charge: the plan must charge that meter,
    and two overrides of one meter must not both be in force on the same day."""
    charged = {c.meter for v in plan.versions for c in v.charges}
    last_end: dict[str, tuple[int, date | None]] = {}
    order = sorted(
        range(len(sub.price_overrides)),
        key=lambda i: sub.price_overrides[i].effective_from or sub.start_date,
    )
    for o in order:
        override = sub.price_overrides[o]
        here = (*at, "price_overrides", o)
        if override.meter not in charged:
            yield (
                (*here, "meter"),
                f"plan {plan.code!r} has no charge on meter {override.meter!r} to override",
            )
        start = override.effective_from or sub.start_date
        previous = last_end.get(override.meter)
        if previous is not None and (previous[1] is None or start < previous[1]):
            yield (
                (*here, "effective_from"),
                f"overlaps price_overrides[{previous[0]}] on meter {override.meter!r}",
            )
        last_end[override.meter] = (o, override.effective_to)


def _overlapping_subscriptions(catalog: Catalog) -> Iterator[Problem]:
    """Two subscriptions billing one customer for one meter on the same day bill its usage
    twice. The later one in the catalog carries the error; a plan change (one ending the day
    the next begins) shares no day, as end_date is exclusive."""
    customers = {c.id: c for c in catalog.customers}
    by_payer: dict[str, list[int]] = {}
    for i, sub in enumerate(catalog.subscriptions):
        customer = customers.get(sub.customer_id)
        if customer is not None:  # an unknown customer is reported on its own
            by_payer.setdefault(customer.parent_id or customer.id, []).append(i)
    plans = {p.code: p for p in catalog.plans}
    for payer, indices in by_payer.items():
        if len(indices) < 2:
            continue  # nearly every customer: no meter sets to build
        meters = {i: _meters_charged(catalog.subscriptions[i], plans) for i in indices}
        for later, i in enumerate(indices):
            for j in indices[:later]:
                yield from _overlap(catalog.subscriptions, j, i, meters, payer)


def _meters_charged(sub: Subscription, plans: dict[str, Plan]) -> set[str]:
    # every version: which one is in force on a day depends on pinning and effective dates,
    # and a meter charged by any of them is usage both subscriptions may bill
    plan = plans.get(sub.plan)
    charged = {c.meter for v in plan.versions for c in v.charges} if plan else set()
    return charged | {o.meter for o in sub.price_overrides}


def _overlap(
    subs: list[Subscription], j: int, i: int, meters: dict[int, set[str]], payer: str
) -> Iterator[Problem]:
    first, second = subs[j], subs[i]
    if first.id == second.id:
        return  # one subscription written twice: reported as a duplicate id
    start = max(first.start_date, second.start_date)
    ends = [d for d in (first.end_date, second.end_date) if d is not None]
    end = min(ends) if ends else None
    shared = sorted(meters[i] & meters[j])
    if (end is not None and start >= end) or not shared:
        return
    days = f"from {start} to {end} (exclusive)" if end else f"from {start} on, with no end"
    via = sorted({s.customer_id for s in (first, second)} - {payer})
    whose = f"customer {payer!r}" + (f" (through {', '.join(map(repr, via))})" if via else "")
    yield (
        ("subscriptions", i),
        f"subscription {second.id!r} overlaps subscription {first.id!r}: both bill {whose} "
        f"{days} for meter(s) {', '.join(repr(m) for m in shared)}, so that usage would be "
        "billed twice; end one the day the other starts",
    )


def _credit_grants(catalog: Catalog) -> Iterator[Problem]:
    """A grant fills the wallet of a known customer (its parent's, for a sub-account), in
    that wallet's currency."""
    customers = {c.id: c for c in catalog.customers}
    for i, grant in enumerate(catalog.credit_grants):
        at = ("credit_grants", i)
        customer = customers.get(grant.customer_id)
        if customer is None:
            yield (*at, "customer_id"), f"unknown customer {grant.customer_id!r}"
            continue
        payer = customers.get(customer.parent_id) if customer.parent_id else customer
        if payer is None:
            continue  # an unknown parent is reported with the customer
        currency = catalog.currency_of(payer)
        if problem := _sub_minor(grant.amount, currency):
            yield (*at, "amount"), problem
        if grant.currency is not None and grant.currency != currency:
            whose = f"customer {customer.id!r}" + (
                f" (billed to its parent {payer.id!r})" if payer is not customer else ""
            )
            yield (
                (*at, "currency"),
                f"the grant is in {grant.currency} but {whose} pays in {currency}",
            )


def _top_ups(catalog: Catalog) -> Iterator[Problem]:
    customers = {c.id: c for c in catalog.customers}
    for i, sub in enumerate(catalog.subscriptions):
        customer = customers.get(sub.customer_id)
        if sub.auto_top_up is None or customer is None:
            continue
        currency = catalog.currency_of(customer)
        for name in ("below", "amount"):
            if problem := _sub_minor(getattr(sub.auto_top_up, name), currency):
                yield ("subscriptions", i, "auto_top_up", name), problem


def _dunning_recipients(catalog: Catalog) -> Iterator[Problem]:
    """With dunning on, a paying customer's `email` is where its reminders go: one that is
    not an address would fail at every send, so it is refused here, before anything runs.
    A customer without an email is allowed: its reminders wait, listed, until one is given."""
    if catalog.settings.dunning is None:
        return
    for i, customer in enumerate(catalog.customers):
        if customer.parent_id is not None or customer.email is None:
            continue  # a sub-account's invoices go to its parent
        if not mail_recipients(customer.email):
            yield (
                ("customers", i, "email"),
                f"{customer.email!r} is not a mail address (settings.dunning sends reminders "
                "to it); give one or more addresses separated by commas",
            )
