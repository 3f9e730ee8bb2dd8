"""The documents of a close month on disk: which files are written, kept or removed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb

from orchestration.billing.documents.browser import chromium_path, print_pdf
from orchestration.billing.documents.page import charts_html, render_invoice_html
from orchestration.billing.documents.usage import DailyUsage
from orchestration.billing.ledger import invoices_with_ledger
from orchestration.catalog.models import Catalog

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def render_documents(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    close_month: str,
    documents_dir: Path,
    document: dict[str, Any] | None = None,
    pdf: bool | None = None,
) -> list[Path]:
    """Write the period's invoice documents; returns every document path of the period.

    `document` defaults to `invoices_with_ledger(con, close_month)`. `pdf`: None prints PDFs when
    Chromium is installed, False never, True requires Chromium.
    """
    if document is None:
        document = invoices_with_ledger(con, close_month)
    browser = _pdf_browser(pdf)
    folder = Path(documents_dir) / close_month
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    usage = DailyUsage.load(con, document["invoices"])
    for invoice in document["invoices"]:
        paths += _write_invoice(usage, catalog, close_month, invoice, folder, browser)
    _remove_stale_drafts(folder, paths)
    return paths


def _pdf_browser(pdf: bool | None) -> str | None:
    if pdf is False:
        return None
    browser = chromium_path()
    if pdf and browser is None:
        raise RuntimeError("PDF documents need Chromium: apt-get install chromium")
    return browser


def _write_invoice(usage, catalog, close_month, invoice, folder: Path, browser) -> list[Path]:
    status = invoice["status"]
    if status == "draft":
        target = folder / f"draft-{_SAFE_NAME.sub('_', invoice['invoice_id'])}.html"
    else:
        suffix = "-void" if status == "void" else ""
        target = folder / f"{_SAFE_NAME.sub('_', invoice['number'])}{suffix}.html"
        if target.exists():  # issued documents are written once
            pdf_path = target.with_suffix(".pdf")
            return [target, *([pdf_path] if pdf_path.exists() else [])]
    customer = catalog.find_customer(invoice["customer_id"])
    charts = charts_html(usage, catalog, invoice)
    target.write_text(render_invoice_html(invoice, close_month, customer, charts), encoding="utf-8")
    if status == "draft" or browser is None:
        return [target]
    return [target, print_pdf(target, target.with_suffix(".pdf"), browser)]


def _remove_stale_drafts(folder: Path, current: list[Path]) -> None:
    keep = set(current)
    for path in folder.glob("draft-*.html"):
        if path not in keep:
            path.unlink()
