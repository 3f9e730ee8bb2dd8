"""`meterbook entitlements`: the published snapshot in the terminal (SPEC 9), read from the
file `meterbook serve` answers from, so both always say the same."""

from __future__ import annotations

from typing import Any


class UnknownCustomer(LookupError):
    pass


def entitlements_document(snapshot: dict[str, Any], customer_id: str | None) -> dict[str, Any]:
    """{as_of, published_at, customers: [{customer_id, name, entitlements: [...]}]}."""
    customers = snapshot["customers"]
    if customer_id is not None and customer_id not in customers:
        raise UnknownCustomer(f"no customer {customer_id!r} in the published snapshot")
    chosen = [customer_id] if customer_id is not None else sorted(customers)
    return {
        "as_of": snapshot["as_of"],
        "published_at": snapshot["published_at"],
        "customers": [
            {
                "customer_id": cid,
                "name": customers[cid]["name"],
                "entitlements": [
                    customers[cid]["entitlements"][code]
                    for code in sorted(customers[cid]["entitlements"])
                ],
            }
            for cid in chosen
        ],
    }


def format_entitlements(document: dict[str, Any]) -> str:
    lines = [
        f"Entitlements as of {document['as_of'] or 'no usage yet'} "
        f"(published {document['published_at']})"
    ]
    header = f"  {'feature':<20} {'access':<8} {'used':>16} {'limit':>14} {'remaining':>14}  period"
    for customer in document["customers"]:
        lines += ["", f"{customer['customer_id']} ({customer['name']})"]
        if not customer["entitlements"]:
            lines.append("  (the catalog declares no features)")
            continue
        lines.append(header)
        lines += [_row(answer) for answer in customer["entitlements"]]
    return "\n".join(lines)


def _row(answer: dict[str, Any]) -> str:
    access = "yes" if answer["has_access"] else "no"
    if answer["soft"] and answer["limit"] is not None:
        access += " (soft)"
    period = (
        f"{answer['period_start']} to {answer['period_end']}"
        if answer["period_start"]
        else "no active subscription"
    )
    return (
        f"  {answer['feature']:<20} {access:<8} {answer['used'] or '-':>16} "
        f"{answer['limit'] or '-':>14} {answer['remaining'] or '-':>14}  {period}"
    )
