"""What `meterbook wallets` shows (SPEC 7): per customer its balances, its grants in drawing
order, what each invoice drew, the grant that expires next and the ledger itself.

Pure: built from the rows of `ledger.ledger_entries`; amounts come out as decimal strings with
the currency's minor digits and dates in ISO form, ready for JSON."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

from orchestration.billing.money import format_money
from orchestration.billing.wallets.grants import PAID, PROMOTIONAL, Grant
from orchestration.billing.wallets.ledger import balances

ZERO = Decimal(0)
KINDS = (PROMOTIONAL, PAID)
ENTRY_FIELDS = (
    "entry_type",
    "grant_id",
    "amount",
    "entry_date",
    "invoice_id",
    "line_id",
    "close_month",
    "provisional",
)
Row = dict[str, Any]


def wallet_report(entries: list[Row], today: date | None = None) -> dict:
    """{"customers": [...]}: one wallet per customer, sorted by id. With `today`, a grant
    whose `expires_on` has passed counts as expired before a close records its expiry."""
    by_customer: dict[str, list[Row]] = defaultdict(list)
    for entry in entries:
        by_customer[entry["customer_id"]].append(entry)
    return {"customers": [_wallet(rows, today) for _, rows in sorted(by_customer.items())]}


def _wallet(entries: list[Row], today: date | None) -> dict:
    customer_id = entries[0]["customer_id"]
    currency = next((e["currency"] for e in entries if e["currency"]), "")
    left = {gid: b for (_, gid), b in balances(entries).items()}
    types: dict[str, set[str]] = defaultdict(set)
    for entry in entries:
        types[entry["grant_id"]].add(entry["entry_type"])
    grants = _grants(entries)
    return {
        "customer_id": customer_id,
        "currency": currency,
        "balances": _kind_balances(entries, currency),
        "grants": [
            _grant_row(g, types[g.grant_id], left[g.grant_id], currency, today) for g in grants
        ],
        "invoices": _invoices(entries, currency),
        "expires_next": _expires_next(grants, left, currency, today),
        "entries": [_entry_row(e, currency) for e in entries],
    }


def _kind_balances(entries: list[Row], currency: str) -> dict[str, str]:
    """{promotional, paid}: the sum of the entries of each kind of grant."""
    by_kind = {kind: ZERO for kind in KINDS}
    for entry in entries:
        by_kind[entry["grant_kind"]] = by_kind.get(entry["grant_kind"], ZERO) + entry["amount"]
    return {kind: format_money(amount, currency) for kind, amount in by_kind.items()}


def _grants(entries: list[Row]) -> list[Grant]:
    """Every grant of the entries, promotional before paid, each kind in drawing order."""
    found: dict[str, Grant] = {}
    for entry in entries:
        if entry["entry_type"] == "grant" or entry["grant_id"] not in found:
            found[entry["grant_id"]] = _as_grant(entry)
    return sorted(found.values(), key=lambda g: (g.kind != PROMOTIONAL, g.order_key()))


def _as_grant(entry: Row) -> Grant:
    """The grant a `grant` entry carries; any other entry only knows its id and kind."""
    given = entry["entry_type"] == "grant"
    return Grant(
        grant_id=entry["grant_id"],
        customer_id=entry["customer_id"],
        kind=entry["grant_kind"],
        amount=entry["grant_amount"] if given and entry.get("grant_amount") is not None else ZERO,
        granted_on=(given and entry.get("granted_on")) or entry["entry_date"],
        expires_on=entry.get("expires_on") if given else None,
        priority=(entry.get("priority") if given else None) or 10,
        applies_to=(entry.get("applies_to") if given else None) or "",
        source=(entry.get("grant_source") if given else None) or "",
    )


def _grant_row(
    grant: Grant, types: set[str], left: Decimal, currency: str, today: date | None
) -> dict:
    return {
        "id": grant.grant_id,
        "kind": grant.kind,
        "source": grant.source,
        "amount": format_money(grant.amount, currency),
        "granted_on": grant.granted_on.isoformat(),
        "expires_on": _iso(grant.expires_on),
        "applies_to": grant.applies_to,
        "balance": format_money(left, currency),
        "status": grant_status(types, left, grant.expires_on, today),
    }


def grant_status(types: set[str], left: Decimal, expires_on: date | None, today=None) -> str:
    """void | rolled_over | expired | used | active, from the grant's entry types and balance."""
    if "void" in types:
        return "void"
    if "rollover" in types:
        return "rolled_over"
    lapsed = left > 0 and today is not None and expires_on is not None and expires_on <= today
    if "expire" in types or lapsed:
        return "expired"
    return "active" if left > 0 else "used"


def _invoices(entries: list[Row], currency: str) -> list[dict]:
    """What each invoice drew, per kind (positive), in ledger order."""
    drew: dict[str, dict] = {}
    for entry in entries:
        if entry["entry_type"] != "draw" or not entry["invoice_id"]:
            continue
        row = drew.setdefault(
            entry["invoice_id"],
            {"invoice_id": entry["invoice_id"], "close_month": entry["close_month"]}
            | {kind: ZERO for kind in KINDS}
            | {"provisional": False},
        )
        row[entry["grant_kind"]] -= entry["amount"]
        row["provisional"] = row["provisional"] or bool(entry["provisional"])
    return [row | {k: format_money(row[k], currency) for k in KINDS} for row in drew.values()]


def _expires_next(
    grants: list[Grant], left: dict[str, Decimal], currency: str, today: date | None
) -> dict | None:
    """The grant with a balance that expires first (after `today`), or None."""
    expiring = [
        g
        for g in grants
        if left[g.grant_id] > 0 and g.expires_on and (today is None or g.expires_on > today)
    ]
    if not expiring:
        return None
    first = min(expiring, key=lambda g: (g.expires_on, g.grant_id))
    return {
        "grant_id": first.grant_id,
        "amount": format_money(left[first.grant_id], currency),
        "expires_on": _iso(first.expires_on),
    }


def _entry_row(entry: Row, currency: str) -> dict:
    row = {name: entry.get(name) for name in ENTRY_FIELDS}
    row["amount"] = format_money(entry["amount"], currency)
    row["entry_date"] = _iso(entry["entry_date"])
    row["provisional"] = bool(entry["provisional"])
    return row


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def format_wallets(report: dict) -> str:
    """The report for people: per customer its balances, grants, draws and next expiry."""
    return "\n\n".join(_wallet_text(w) for w in report["customers"])


def _wallet_text(wallet: dict) -> str:
    balances_text = ", ".join(f"{k} {v}" for k, v in wallet["balances"].items())
    head = f"{wallet['customer_id']} ({wallet['currency']}): {balances_text}"
    grants = [("Grant", "Kind", "Source", "Amount", "Balance", "From", "Until", "For", "Status")]
    grants += [
        (g["id"], g["kind"], g["source"], g["amount"], g["balance"], g["granted_on"])
        + (g["expires_on"] or "never", g["applies_to"], g["status"])
        for g in wallet["grants"]
    ]
    lines = [head, *_columns(grants, right=(3, 4))]
    if wallet["invoices"]:
        drawn = [("Invoice", "Month", "Promotional", "Paid", "")]
        drawn += [
            (i["invoice_id"], i["close_month"], i[PROMOTIONAL], i[PAID])
            + ("draft" if i["provisional"] else "",)
            for i in wallet["invoices"]
        ]
        lines += ["  Drawn by invoices:", *_columns(drawn, right=(2, 3))]
    lines.append(f"  Expires next: {_next_text(wallet['expires_next'])}")
    return "\n".join(lines)


def _next_text(expiring: dict | None) -> str:
    if expiring is None:
        return "nothing"
    return f"{expiring['amount']} of {expiring['grant_id']} on {expiring['expires_on']}"


def _columns(rows: list[tuple[str, ...]], right: tuple[int, ...]) -> list[str]:
    """Aligned columns, indented; the columns in `right` (amounts) right-aligned."""
    widths = [max(len(row[c]) for row in rows) for c in range(len(rows[0]))]
    return [
        "  "
        + "  ".join(
            cell.rjust(w) if c in right else cell.ljust(w)
            for c, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
