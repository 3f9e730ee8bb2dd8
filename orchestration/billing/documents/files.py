"""The documents of a close month on disk: which files are written, kept, completed or removed."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from orchestration.billing.documents.chart import invoice_charts
from orchestration.billing.documents.credits import CreditBook
from orchestration.billing.documents.issued import Issued, issued_moments
from orchestration.billing.documents.page import render_invoice_html
from orchestration.billing.documents.pdf import pdf_unavailable, print_pdfs
from orchestration.billing.documents.terms import document_terms
from orchestration.billing.documents.usage import DailyUsage
from orchestration.billing.ledger import invoices_with_ledger
from orchestration.catalog.models import Catalog, trial_end_of

_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_OFF = ("0", "off", "no", "false")


@dataclass
class DocumentCounts:
    html_written: int = 0
    pdf_written: int = 0  # for documents first written in this run
    pdf_completed: int = 0  # for issued documents an earlier run left without a PDF
    pdf_missing: int = 0  # issued documents still without a PDF after this run
    pdf_unavailable: str | None = None  # why no PDF could be printed here

    def summary(self) -> str:
        text = (
            f"{self.html_written} HTML documents written, {self.pdf_written} PDFs printed, "
            f"{self.pdf_completed} PDFs completed from earlier runs"
        )
        if self.pdf_missing:
            text += f", {self.pdf_missing} PDFs missing"
            text += f" ({self.pdf_unavailable})" if self.pdf_unavailable else ""
        return text


class RenderedDocuments(list[Path]):
    """Every document path of the period (HTML and PDF), with what this run did in `counts`."""

    def __init__(self, paths: list[Path], counts: DocumentCounts) -> None:
        super().__init__(paths)
        self.counts = counts


def render_documents(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    close_month: str,
    documents_dir: Path,
    document: dict[str, Any] | None = None,
    pdf: bool | None = None,
    progress: Callable[[str], None] | None = None,
) -> RenderedDocuments:
    """Write the period's invoice documents; returns every document path of the period.

    `document` defaults to `invoices_with_ledger(con, close_month)`. `pdf`: None prints PDFs
    of issued documents when WeasyPrint can load (unless METERBOOK_PDF=off), False never,
    True requires it. The result's `counts` say what was written, completed or is missing.
    """
    if document is None:
        document = invoices_with_ledger(con, close_month)
    why_not = "not asked"
    if pdf is None and os.environ.get("METERBOOK_PDF", "").lower() in _OFF:
        pdf = False  # e.g. a benchmark of the close alone; the next run completes them
        why_not = "METERBOOK_PDF=off"
    counts = DocumentCounts(pdf_unavailable=pdf_unavailable() if pdf is not False else why_not)
    if pdf and counts.pdf_unavailable:
        raise RuntimeError(f"PDF documents need WeasyPrint: {counts.pdf_unavailable}")
    folder = Path(documents_dir) / close_month
    folder.mkdir(parents=True, exist_ok=True)
    writer = _Writer(con, catalog, close_month, folder, document["invoices"])
    html_paths, to_print = [], []
    for number, invoice in enumerate(document["invoices"], start=1):
        html_path, written = writer.write(invoice)
        html_paths.append(html_path)
        counts.html_written += written
        if invoice["status"] != "draft" and not html_path.with_suffix(".pdf").exists():
            to_print.append((html_path, written))
        if progress and number % 1000 == 0:
            progress(f"{number} of {len(document['invoices'])} documents")
    _print(to_print, counts, progress)
    _remove_stale_drafts(folder, html_paths)
    pdfs = [p.with_suffix(".pdf") for p in html_paths if p.with_suffix(".pdf").exists()]
    return RenderedDocuments([*html_paths, *pdfs], counts)


def _print(to_print: list[tuple[Path, int]], counts: DocumentCounts, progress) -> None:
    if to_print and counts.pdf_unavailable is None:
        if progress:
            progress(f"printing {len(to_print)} PDFs")
        print_pdfs([(html, html.with_suffix(".pdf")) for html, _ in to_print], progress=progress)
        counts.pdf_written = sum(1 for _, written in to_print if written)
        counts.pdf_completed = len(to_print) - counts.pdf_written
    else:
        counts.pdf_missing = len(to_print)


class _Writer:
    """Writes one invoice's HTML; what every invoice needs is read once for the month."""

    def __init__(self, con, catalog: Catalog, close_month: str, folder: Path, invoices) -> None:
        self.catalog, self.close_month, self.folder = catalog, close_month, folder
        self.usage = DailyUsage.load(con, invoices)
        self.issued: dict[str, Issued] = issued_moments(con, close_month)
        self.trial_ends = _trial_ends(catalog)
        self.credits = CreditBook.load(con)  # the wallet ledger, for every invoice's Credits

    def write(self, invoice: dict[str, Any]) -> tuple[Path, int]:
        """The HTML path, and 1 when it was written now (issued documents are written once,
        so the daily chart of a sent invoice never moves with late events)."""
        if invoice["status"] == "draft":
            target = self.folder / f"draft-{_SAFE_NAME.sub('_', invoice['invoice_id'])}.html"
        else:
            suffix = "-void" if invoice["status"] == "void" else ""
            target = self.folder / f"{_SAFE_NAME.sub('_', invoice['number'])}{suffix}.html"
            if target.exists():
                return target, 0
        target.write_text(self._html(invoice), encoding="utf-8")
        return target, 1

    def _html(self, invoice: dict[str, Any]) -> str:
        customer = self.catalog.find_customer(invoice["customer_id"])
        issued = self.issued.get(invoice["invoice_id"]) if invoice["status"] != "draft" else None
        terms = document_terms(
            customer,
            issued.finalized_at if issued else None,
            issued.voided_at if issued and invoice["status"] == "void" else None,
        )
        return render_invoice_html(
            invoice,
            self.close_month,
            self.catalog,
            terms,
            # drafts are rebuilt by every close: at 10,000 invoices their charts cost about
            # 90 s a close; a customer only ever receives an issued document
            invoice_charts(self.usage, self.catalog, invoice)
            if invoice["status"] != "draft"
            else (),
            self.trial_ends.get(invoice["subscription_id"]),
            self.credits.summary(invoice, self.close_month),
        )


def _trial_ends(catalog: Catalog) -> dict[str, date]:
    plans = {plan.code: plan for plan in catalog.plans}
    ends = {}
    for sub in catalog.subscriptions:
        plan = plans.get(sub.plan)
        end = trial_end_of(sub, plan) if plan else sub.trial_end
        if end is not None:
            ends[sub.id] = end
    return ends


def _remove_stale_drafts(folder: Path, current: list[Path]) -> None:
    keep = set(current)
    for path in folder.glob("draft-*.html"):
        if path not in keep:
            path.unlink()
