"""Compare `meterbook invoices --json` with a scenario's expected file, exactly as
../shared/scenarios/README.md ("How invoices are compared") says. Returns the differences,
one readable sentence each; no differences means the scenario passes for that month."""

from __future__ import annotations

import json
import re
from collections import Counter
from decimal import Decimal, InvalidOperation

from orchestration.billing.money import minor_exponent

INVOICE_FIELDS = (
    "currency",
    "period_start",
    "period_end",
    "subtotal",
    "discount_total",
    "tax_total",
    "total",
    "amount_due",
)
QUANTITY_TOLERANCE = Decimal("0.000001")


def line_key(line: dict) -> tuple:
    """The key lines are matched (and summed) by, which depends on `kind`."""
    kind = line.get("kind")
    if kind == "usage":
        group = line.get("group") or {}  # null and {} are the same group
        return (kind, line.get("meter"), json.dumps(group, sort_keys=True))
    if kind in ("minimum_true_up", "maximum_cap"):
        return (kind, line.get("meter"))
    if kind in ("fixed_fee", "fixed_fee_credit", "promotional_credit", "credit_purchase"):
        return (kind, line.get("fee_code"))  # credit lines: one per grant (SPEC 7)
    return (kind,)


def _money_pattern(currency: str) -> re.Pattern:
    digits = minor_exponent(currency)
    return re.compile(r"^-?\d+" + (rf"\.\d{{{digits}}}" if digits else "") + "$")


def _decimal(value) -> Decimal | None:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def _summed(lines: list[dict], where: str, pattern: re.Pattern, diffs: list[str]) -> dict:
    sums: dict[tuple, dict] = {}
    for line in lines:
        amount = line.get("amount")
        if not isinstance(amount, str) or not pattern.match(amount):
            diffs.append(
                f"{where}: line {line_key(line)} amount {amount!r} lacks the currency's minor digits"
            )
            continue
        entry = sums.setdefault(
            line_key(line),
            {"amount": Decimal(0), "quantity": Decimal(0), "billable_quantity": Decimal(0)},
        )
        entry["amount"] += Decimal(amount)
        for field in ("quantity", "billable_quantity"):
            value = _decimal(line.get(field)) if line.get(field) is not None else Decimal(0)
            if value is None:
                diffs.append(
                    f"{where}: line {line_key(line)} {field} {line.get(field)!r} is not a decimal"
                )
            else:
                entry[field] += value
    return sums


def _compare_lines(actual: dict, expected: dict, where: str, diffs: list[str]) -> None:
    pattern = _money_pattern(expected.get("currency") or actual.get("currency") or "")
    got = _summed(actual.get("lines", []), f"{where} (actual)", pattern, diffs)
    want = _summed(expected.get("lines", []), f"{where} (expected)", pattern, diffs)
    for key in sorted(set(got) | set(want), key=str):
        if key not in got or key not in want:
            present = got.get(key) or want.get(key)
            if key[0] != "usage" and present["amount"] == 0:
                continue  # a zero non-usage line may be left out
            side = "missing" if key not in got else "unexpected"
            diffs.append(f"{where}: line {key} {side} (amount {present['amount']})")
            continue
        if got[key]["amount"] != want[key]["amount"]:
            diffs.append(
                f"{where}: line {key} amount {got[key]['amount']} != expected {want[key]['amount']}"
            )
        if key[0] == "usage":
            for field in ("quantity", "billable_quantity"):
                if abs(got[key][field] - want[key][field]) > QUANTITY_TOLERANCE:
                    diffs.append(
                        f"{where}: line {key} {field} {got[key][field]} != expected {want[key][field]}"
                    )


def _by_pair(invoices: list[dict], side: str, diffs: list[str]) -> dict:
    pairs = Counter((i.get("customer_id"), i.get("subscription_id")) for i in invoices)
    for pair, count in sorted(pairs.items(), key=str):
        if count > 1:
            diffs.append(f"{side}: {count} invoices for {pair}")
    return {(i.get("customer_id"), i.get("subscription_id")): i for i in invoices}


def compare(actual: dict, expected: dict) -> list[str]:
    """Every difference between the actual document and the expected one."""
    diffs: list[str] = []
    got = _by_pair(actual.get("invoices", []), "actual", diffs)
    want = _by_pair(expected.get("invoices", []), "expected", diffs)
    for pair in sorted(set(got) | set(want), key=str):
        where = f"invoice {pair[0]}/{pair[1]}"
        if pair not in got:
            diffs.append(f"{where}: missing")
            continue
        if pair not in want:
            diffs.append(f"{where}: unexpected")
            continue
        # credits_applied (SPEC 7) is compared where the expected invoice gives it
        fields = INVOICE_FIELDS + (("credits_applied",) if "credits_applied" in want[pair] else ())
        for field in fields:
            if got[pair].get(field) != want[pair].get(field):
                diffs.append(
                    f"{where}: {field} {got[pair].get(field)!r} != expected {want[pair].get(field)!r}"
                )
        _compare_lines(got[pair], want[pair], where, diffs)
    return diffs
