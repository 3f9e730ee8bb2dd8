"""Currency minor units and half-up rounding (SPEC 3.4). Pure functions, Decimal only."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# ISO 4217 exponents for currencies whose minor unit is not 2.
_EXPONENTS = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
    "CLF": 4,
    "UYW": 4,
}


def minor_exponent(currency: str) -> int:
    """Digits after the decimal point in `currency` (2 unless ISO 4217 says otherwise)."""
    return _EXPONENTS.get(currency.upper(), 2)


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
