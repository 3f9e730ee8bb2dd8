"""The Credits block of an invoice document (SPEC 7): what the invoice drew from the customer's
wallet, and the balance per kind that the invoice's close left.

Read from the wallet ledger in one query per render (`CreditBook.load`), never per invoice.
The balance is the sum of the customer's entries of close months up to the invoice's: a
draft sees the provisional entries of the closes not finalized, an issued invoice only the
permanent ones (its document is written once and must not move with a later close). A
customer without wallet entries gets no block: the page is what it was before wallets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import duckdb

from orchestration.billing.money import format_money
from orchestration.billing.wallets.ledger import ledger_entries

KINDS = ("promotional", "paid")  # the order the block shows them in (the drawing order)
_NAMES = {"promotional": "Promotional", "paid": "Prepaid"}


@dataclass(frozen=True)
class CreditSummary:
    """One invoice's Credits block. `drawn` and `left` are by grant kind, for the kinds the
    customer's wallet held by this close; drawn amounts are positive."""

    currency: str
    close_month: str
    provisional: bool  # a draft's: the close's draws are rebuilt until it is finalized
    drawn: dict[str, Decimal]
    left: dict[str, Decimal]

    def rows(self) -> list[tuple[str, str]]:
        kinds = [k for k in KINDS if k in self.left]
        rows = [(f"{_NAMES[k]} credits drawn", self._money(self.drawn.get(k))) for k in kinds]
        rows += [(f"{_NAMES[k]} balance left", self._money(self.left[k])) for k in kinds]
        return rows

    def note(self) -> str:
        text = f"Balances as the {self.close_month} close left them"
        return text + (", provisional until the invoice is issued" if self.provisional else "")

    def _money(self, amount: Decimal | None) -> str:
        return f"{self.currency} {format_money(amount or Decimal(0), self.currency)}"


@dataclass(frozen=True)
class _Entry:
    close_month: str
    provisional: bool
    grant_kind: str
    amount: Decimal


class CreditBook:
    """The wallet ledger, indexed for the documents of one render."""

    def __init__(self, entries: Iterable[dict[str, Any]]) -> None:
        self._by_customer: dict[str, list[_Entry]] = defaultdict(list)
        # invoice id -> [(provisional, kind, amount)] of its draws
        self._draws: dict[str, list[tuple[bool, str, Decimal]]] = defaultdict(list)
        for entry in entries:
            provisional = bool(entry.get("provisional", False))
            amount = Decimal(entry["amount"])
            kind = entry["grant_kind"]
            self._by_customer[entry["customer_id"]].append(
                _Entry(entry["close_month"], provisional, kind, amount)
            )
            if entry["entry_type"] == "draw" and entry.get("invoice_id"):
                self._draws[entry["invoice_id"]].append((provisional, kind, amount))
        self._balances: dict[tuple[str, str, bool], dict[str, Decimal]] = {}

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> CreditBook:
        """Every customer's entries, permanent and provisional, in one query."""
        return cls(ledger_entries(con))

    def summary(self, invoice: dict[str, Any], close_month: str) -> CreditSummary | None:
        """The invoice's Credits block; None when its customer had no wallet by this close."""
        provisional = invoice["status"] == "draft"
        left = self._left(invoice["customer_id"], close_month, provisional)
        if not left:
            return None
        drawn: dict[str, Decimal] = defaultdict(Decimal)
        for is_provisional, kind, amount in self._draws.get(invoice["invoice_id"], ()):
            if provisional or not is_provisional:
                drawn[kind] -= amount
        return CreditSummary(invoice["currency"], close_month, provisional, dict(drawn), left)

    def _left(self, customer_id: str, close_month: str, provisional: bool) -> dict[str, Decimal]:
        key = (customer_id, close_month, provisional)
        if key not in self._balances:  # one sum per customer and close, however many invoices
            left: dict[str, Decimal] = {}
            for entry in self._by_customer.get(customer_id, ()):
                if entry.close_month <= close_month and (provisional or not entry.provisional):
                    left[entry.grant_kind] = left.get(entry.grant_kind, Decimal(0)) + entry.amount
            self._balances[key] = left
        return self._balances[key]
