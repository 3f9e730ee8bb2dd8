"""How the documents write text and numbers: escaped, quantities without trailing zeros."""

from __future__ import annotations

import html
from decimal import Decimal
from typing import Any


def escape(value: Any) -> str:
    """HTML-escaped text; None is empty."""
    return html.escape("" if value is None else str(value), quote=True)


def quantity_text(value: Any) -> str:
    """A decimal without its trailing zeros: 4500.000000000000 reads 4500."""
    if value is None or value == "":
        return ""
    text = format(Decimal(str(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
