"""The one way the billing documents load their Jinja templates (invoices, the month so far,
credit notes, dunning mail, backtest reports): escaped HTML, an unknown name an error, and
block tags that leave no blank lines behind."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jinja2 import BaseLoader, Environment, FileSystemLoader, StrictUndefined


def template_environment(
    templates: Path | BaseLoader, autoescape: bool | Callable[[str | None], bool] = True
) -> Environment:
    loader = FileSystemLoader(templates) if isinstance(templates, Path) else templates
    return Environment(
        loader=loader,
        autoescape=autoescape,
        undefined=StrictUndefined,  # a misspelt field fails the render, never prints nothing
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
