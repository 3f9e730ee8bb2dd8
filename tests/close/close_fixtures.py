"""SPEC 5 shaped drafts and a small catalog, built the way the rating stage builds them.

The helpers compute totals from the lines (SPEC 3.4) so every fixture invoice adds up; tests
that need a broken invoice break it on purpose.
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from typing import Any

from orchestration.billing.money import format_money, round_money
from orchestration.catalog.models import Catalog

CATALOG = {
    "settings": {"invoice_prefix": "MB", "grace_days": 3, "default_currency": "USD"},
    "meters": [
        {
            "code": "api_calls",
            "name": "API calls",
            "event_name": "api.request",
            "aggregation": "count",
        },
        {
            "code": "tokens",
            "name": "LLM tokens",
            "event_name": "llm.completion",
            "aggregation": "sum",
            "expression": "tokens",
            "group_by": ["model"],
        },
    ],
    "plans": [
        {
            "code": "pro",
            "name": "Pro",
            "currency": "USD",
            "versions": [
                {
                    "version": 1,
                    "effective_from": "2026-01-01",
                    "fixed_fees": [{"code": "platform", "name": "Platform fee", "amount": "49.00"}],
                    "charges": [
                        {"meter": "api_calls", "model": "per_unit", "unit_price": "0.10"},
                        {"meter": "tokens", "model": "per_unit", "unit_price": "0.002"},
                    ],
                }
            ],
        },
        {
            "code": "yen",
            "currency": "JPY",
            "versions": [
                {
                    "version": 1,
                    "effective_from": "2026-01-01",
                    "charges": [{"meter": "api_calls", "model": "per_unit", "unit_price": "0.35"}],
                }
            ],
        },
    ],
    "customers": [
        {"id": "acme", "name": 'Acme <Corp> & "Sons"', "currency": "USD", "tax_rate": "0.20"},
        {"id": "beta", "name": "Beta", "currency": "USD", "timezone": "America/Los_Angeles"},
        {
            "id": "tokyo",
            "name": "Tokyo KK",
            "currency": "JPY",
            "timezone": "Asia/Tokyo",
            "tax_rate": "0.10",
        },
    ],
    "subscriptions": [
        {"id": "sub_acme", "customer_id": "acme", "plan": "pro", "start_date": "2026-01-01"},
        {"id": "sub_beta", "customer_id": "beta", "plan": "pro", "start_date": "2026-01-01"},
        {"id": "sub_tokyo", "customer_id": "tokyo", "plan": "yen", "start_date": "2026-01-01"},
    ],
}


def catalog(**settings: Any) -> Catalog:
    data = {**CATALOG, "settings": {**CATALOG["settings"], **settings}}
    return Catalog.model_validate(data)


def line(
    kind,
    amount,
    currency="USD",
    meter=None,
    group=None,
    quantity=None,
    fee_code=None,
    start="2026-10-01",
    end="2026-11-01",
    description=None,
    event_count=None,
):
    ident = hashlib.sha256(repr((kind, meter, group, fee_code, start)).encode()).hexdigest()[:16]
    return {
        "line_id": f"line_{ident}",
        "kind": kind,
        "meter": meter,
        "fee_code": fee_code,
        "group": group,
        "description": description or f"{kind} {meter or fee_code or ''}".strip(),
        "period_start": start,
        "period_end": end,
        "quantity": None if quantity is None else str(quantity),
        "billable_quantity": None if quantity is None else str(quantity),
        "unit_price": None,
        "amount": format_money(Decimal(amount), currency),
        "event_count": event_count,
        "tiers": [],
    }


def invoice(
    customer,
    subscription,
    lines,
    start="2026-10-01",
    end="2026-11-01",
    currency="USD",
    tax_rate="0",
):
    subtotal = sum((Decimal(x["amount"]) for x in lines), Decimal(0))
    discounts = -sum((Decimal(x["amount"]) for x in lines if x["kind"] == "discount"), Decimal(0))
    tax = round_money(subtotal * Decimal(tax_rate), currency)
    total = subtotal + tax
    ident = hashlib.sha256(f"{subscription}|{start}".encode()).hexdigest()[:20]
    return {
        "invoice_id": f"inv_{ident}",
        "number": None,
        "status": "draft",
        "customer_id": customer,
        "subscription_id": subscription,
        "currency": currency,
        "period_start": start,
        "period_end": end,
        "subtotal": format_money(subtotal, currency),
        "discount_total": format_money(discounts, currency),
        "tax_total": format_money(tax, currency),
        "total": format_money(total, currency),
        "credits_applied": format_money(Decimal(0), currency),
        "amount_due": format_money(total, currency),
        "lines": lines,
    }


def month_bounds(period: str) -> tuple[str, str]:
    year, month = (int(p) for p in period.split("-"))
    nxt = (year + month // 12, month % 12 + 1)
    return f"{year:04d}-{month:02d}-01", f"{nxt[0]:04d}-{nxt[1]:02d}-01"


def drafts(period: str = "2026-10", calls: int = 12, tokens: int = 4500) -> dict[str, Any]:
    """Three draft invoices for `period`: acme (tax, groups), beta (LA time), tokyo (JPY)."""
    start, end = month_bounds(period)
    _, after = month_bounds(end[:7])
    span = {"start": start, "end": end}
    acme = [
        line("usage", Decimal(calls) * Decimal("0.10"), meter="api_calls", quantity=calls, **span),
        line(
            "usage",
            Decimal(tokens) * Decimal("0.002"),
            meter="tokens",
            group={"model": "large"},
            quantity=tokens,
            **span,
        ),
        line("usage", "0", meter="tokens", group={"model": "small"}, quantity=0, **span),
        line("fixed_fee", "49.00", fee_code="platform", quantity=1, start=end, end=after),
    ]
    beta = [
        line("usage", "0", meter="api_calls", quantity=0, **span),
        line("usage", "0", meter="tokens", group=None, quantity=0, **span),
        line("fixed_fee", "49.00", fee_code="platform", quantity=1, start=end, end=after),
    ]
    tokyo = [
        line(
            "usage",
            Decimal(calls) * Decimal("0.35"),
            "JPY",
            meter="api_calls",
            quantity=calls,
            **span,
        )
    ]
    return {
        "period": period,
        "invoices": [
            invoice("acme", "sub_acme", acme, start, end, tax_rate="0.20"),
            invoice("beta", "sub_beta", beta, start, end),
            invoice("tokyo", "sub_tokyo", tokyo, start, end, "JPY", "0.10"),
        ],
    }


TAX = {"acme": "0.20", "beta": "0", "tokyo": "0.10"}


def with_adjustments(document: dict[str, Any], rows) -> dict[str, Any]:
    """What rating does with adjustment_lines: one `adjustment` line each, totals re-added."""
    invoices = []
    for inv in document["invoices"]:
        extra = [
            {
                **line(
                    "adjustment",
                    row["amount"],
                    inv["currency"],
                    meter=row["meter"],
                    group=json.loads(row["group_key"]) if row["group_key"] else None,
                    start=str(row["period_start"]),
                    end=str(row["period_end"]),
                    description=row["description"],
                ),
                "line_id": row["line_id"],
                "quantity": None if row["quantity"] is None else str(row["quantity"]),
            }
            for row in rows
            if row["subscription_id"] == inv["subscription_id"]
        ]
        invoices.append(
            invoice(
                inv["customer_id"],
                inv["subscription_id"],
                inv["lines"] + extra,
                inv["period_start"],
                inv["period_end"],
                inv["currency"],
                TAX[inv["customer_id"]],
            )
        )
    return {**document, "invoices": invoices}
