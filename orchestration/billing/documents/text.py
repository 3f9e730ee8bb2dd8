"""How the documents write numbers: quantities at display precision, prices in full (pure)."""

from __future__ import annotations

import html
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

# Without a display_decimals, a quantity shows as billed but at most this many decimals:
# 151.961627499997 reads 151.9616. The JSON and the ledger keep every digit.
DEFAULT_MAX_DECIMALS = 4


def escape(value: Any) -> str:
    """HTML-escaped text; None is empty."""
    return html.escape("" if value is None else str(value), quote=True)


def quantity_text(value: Any) -> str:
    """A decimal in full without its trailing zeros: 4500.000000000000 reads 4500.

    For prices and tier bounds, which must never be rounded on a document."""
    if value is None or value == "":
        return ""
    return _plain(Decimal(str(value)))


def price_text(value: Any, exponent: int) -> str:
    """A price in full, with at least the currency's minor digits: 1.5 reads 1.50 in USD,
    0.002 stays 0.002 (never rounded), 1 reads 1 in JPY."""
    text = quantity_text(value)
    if not text or exponent <= 0:
        return text
    whole, _, digits = text.partition(".")
    return f"{whole}.{digits.ljust(exponent, '0')}"


def display_quantity(value: Any, decimals: int | None = None) -> str:
    """A quantity as a reader sees it: exactly `decimals` places when given, else as billed
    with trailing zeros cut and at most DEFAULT_MAX_DECIMALS. Rounded half-up, as SPEC 3.4
    rounds money, so a reader who rounds by hand gets the same figure."""
    if value is None or value == "":
        return ""
    places = DEFAULT_MAX_DECIMALS if decimals is None else decimals
    with localcontext(prec=60):  # DECIMAL(38, 12) has 38 digits: never an InvalidOperation
        shown = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    return format(shown, "f") if decimals is not None else _plain(shown)


def grouped(value: Decimal) -> str:
    """A count with thousands separators, for units such as 'per 1,000 tokens'."""
    return _plain(value) if value != value.to_integral_value() else f"{int(value):,}"


def _plain(number: Decimal) -> str:
    text = format(number, "f")
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return "0" if text in ("-0", "") else text
