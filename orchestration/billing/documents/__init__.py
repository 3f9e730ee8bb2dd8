"""Invoice documents: one self-contained HTML page per invoice, and a PDF of each issued one.

Files, under `documents_dir/<period>/`:
- `draft-<invoice_id>.html`: rewritten on every run while the invoice is a draft; a draft
  that was finalized or disappeared has its file removed. Drafts get no PDF.
- `<number>.html` + `.pdf`: the HTML is written once, when first seen finalized, and never
  changes afterwards (the daily chart would otherwise move with late events).
- `<number>-void.html` + `.pdf`: written once when the invoice is voided; the original
  stays beside it.
PDF: printed by WeasyPrint from the HTML (no browser). Where WeasyPrint cannot load (no
Pango), documents are HTML only and counted as missing PDFs; the next run that can print
completes every issued document still without its PDF.
Modules: files (what is written where, and the counts), page + templates/ (the HTML, pure),
lines (what each line prints), terms (issue and due dates), text (numbers), chart
(matplotlib), usage, issued and credits (the month's data, one query each; credits: the
wallet ledger behind the Credits block, SPEC 7), pdf (WeasyPrint),
browser (Chromium screenshots, for the tests).
"""

from orchestration.billing.documents.browser import chromium_path, screenshot
from orchestration.billing.documents.chart import Chart, invoice_charts, usage_chart
from orchestration.billing.documents.credits import CreditBook, CreditSummary
from orchestration.billing.documents.files import (
    DocumentCounts,
    RenderedDocuments,
    render_documents,
)
from orchestration.billing.documents.page import render_invoice_html
from orchestration.billing.documents.pdf import pdf_unavailable, print_pdf, print_pdfs
from orchestration.billing.documents.terms import Terms, document_terms
from orchestration.billing.documents.usage import DailyPoint, DailyUsage

__all__ = [
    "Chart",
    "CreditBook",
    "CreditSummary",
    "DailyPoint",
    "DailyUsage",
    "DocumentCounts",
    "RenderedDocuments",
    "Terms",
    "chromium_path",
    "document_terms",
    "invoice_charts",
    "pdf_unavailable",
    "print_pdf",
    "print_pdfs",
    "render_documents",
    "render_invoice_html",
    "screenshot",
    "usage_chart",
]
