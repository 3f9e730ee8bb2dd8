"""Invoice documents: one self-contained HTML page per invoice, PDF where Chromium is here.

Files, under `documents_dir/<period>/`:
- `draft-<invoice_id>.html`: rewritten on every run while the invoice is a draft; a draft
  that was finalized or disappeared has its file removed.
- `<number>.html` (+ `.pdf`): written once, when first seen finalized. The issued document
  never changes afterwards (the daily chart would otherwise move with late events).
- `<number>-void.html` (+ `.pdf`): written once when the invoice is voided; the original
  stays beside it.
PDF: printed by headless Chromium (`--print-to-pdf`) for finalized and void documents only,
when a `chromium` binary is on PATH; without it HTML only. Every text is HTML-escaped.
Modules: files (what is written where), page (the HTML, pure), usage (the chart data, SQL),
chart (the SVG), browser (Chromium), text (escaping and numbers).
"""

from orchestration.billing.documents.browser import chromium_path, print_pdf, screenshot
from orchestration.billing.documents.chart import usage_chart_svg
from orchestration.billing.documents.files import render_documents
from orchestration.billing.documents.page import render_invoice_html
from orchestration.billing.documents.usage import DailyPoint, DailyUsage

__all__ = [
    "DailyPoint",
    "DailyUsage",
    "chromium_path",
    "print_pdf",
    "render_documents",
    "render_invoice_html",
    "screenshot",
    "usage_chart_svg",
]
