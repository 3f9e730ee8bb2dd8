"""Currency minor units and half-up rounding (SPEC 3.4). Pure functions, Decimal only."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from orchestration.catalog.currencies import minor_exponent

__all__ = ["format_money", "minor_exponent", "quantum", "round_money", "to_minor_units"]


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_exponent(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Half-up (away from zero) to the currency's minor unit, as Stripe and finance expect."""
    return Decimal(amount).quantize(quantum(currency), rounding=ROUND_HALF_UP)


def to_minor_units(amount: Decimal, currency: str) -> int:
    """An already rounded amount as the integer Stripe wants (JPY 0 digits, KWD 3)."""
    rounded = round_money(amount, currency)
    if rounded != amount:
        raise ValueError(f"{amount} {currency} is not rounded to the currency's minor unit")
    return int(rounded.scaleb(minor_exponent(currency)))


def format_money(amount: Decimal, currency: str) -> str:
    """The decimal string of SPEC 5: exactly the currency's minor digits."""
    return format(round_money(amount, currency), "f")
