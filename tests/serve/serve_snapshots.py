"""Small published snapshots for the API tests, in publish.py's format (format 1).

Generation `g` of a snapshot stands for the g-th publish: every customer's limit features
have `used` = g and `remaining` = limit - g, and every `as_of` names g, so an answer shows
which snapshot it came from and whether it is internally consistent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from orchestration.billing.entitlements.publish import FORMAT, snapshot_path, write_atomically

START, END = "2026-10-01", "2026-11-01"
FEATURES = {
    "sso": {"code": "sso", "name": "Single sign-on", "type": "boolean", "meter": None},
    "emails": {"code": "emails", "name": "Emails", "type": "limit", "meter": "emails"},
    "api_calls": {"code": "api_calls", "name": "API calls", "type": "limit", "meter": "calls"},
}
LIMITS = {"emails": "10000", "api_calls": "2500.5"}  # a decimal limit: strings end to end
CUSTOMERS = ("acme", "globex", "initech")
WATERMARK = datetime(2026, 10, 20, 13, 0, tzinfo=UTC)


def as_of(generation: int) -> str:
    """Generation g's usage watermark: g seconds after 2026-10-20T13:00:00Z."""
    return f"{WATERMARK + timedelta(seconds=generation):%Y-%m-%dT%H:%M:%SZ}"


def generation_of(stamp: str) -> int:
    parsed = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return int((parsed - WATERMARK).total_seconds())


def feature_document(customer_id: str, code: str, generation: int) -> dict:
    """One feature's answer (SPEC 9): limit, used and remaining are decimal strings, null for a
    boolean feature."""
    document = {
        "customer_id": customer_id,
        "feature": code,
        "type": FEATURES[code]["type"],
        "has_access": True,
        "limit": None,
        "used": None,
        "remaining": None,
        "soft": False,
        "period_start": START,
        "period_end": END,
        "as_of": as_of(generation),
    }
    if code in LIMITS:
        limit = Decimal(LIMITS[code])
        used = Decimal(generation)
        remaining = max(limit - used, Decimal(0))
        document.update(limit=str(limit), used=str(used), remaining=str(remaining), soft=True)
    return document


def usage_document(customer_id: str, generation: int) -> dict:
    return {
        "customer_id": customer_id,
        "currency": "USD",
        "period_start": START,
        "period_end": END,
        "as_of": as_of(generation),
        "meters": {"emails": str(generation), "calls": f"{generation}.25"},
        "draft": {"subtotal": "49.00", "total": "49.00", "currency": "USD"},
    }


def snapshot_document(generation: int = 1, customers=CUSTOMERS) -> dict:
    return {
        "format": FORMAT,
        "as_of": as_of(generation),
        "published_at": as_of(generation + 3600),
        "features": FEATURES,
        "customers": {
            customer_id: {
                "customer_id": customer_id,
                "name": customer_id.title(),
                "currency": "USD",
                "entitlements": {
                    code: feature_document(customer_id, code, generation) for code in FEATURES
                },
                "usage": usage_document(customer_id, generation),
            }
            for customer_id in customers
        },
    }


def publish(home: Path, generation: int = 1, **options) -> dict:
    """Written as the publisher writes it (write_atomically); returns the document."""
    document = snapshot_document(generation, **options)
    write_atomically(snapshot_path(home), document)
    return document
