"""PDFs printed by WeasyPrint from the same HTML: no browser, every environment.

WeasyPrint needs Pango (a system library); without it `import weasyprint` raises OSError, and
the documents are written as HTML only, counted as missing PDFs so the next run completes
them. One document takes ~0.1 s to lay out, so many are printed by a pool of processes (one
per core, spawned, so it is safe under Dagster and on every platform); few are printed here,
since a pool costs a second or two to start.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import re
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import ModuleType

# Below this many PDFs a pool costs more to start than it saves.
POOL_FROM = 24
_CHUNK = 8  # documents per task: fewer round trips to the pool
_STYLE = re.compile(r"<style>(.*?)</style>", re.DOTALL)
INSTALL_HINT = (
    "WeasyPrint needs Pango and a font: apt-get install libpango-1.0-0 libpangoft2-1.0-0"
    " fontconfig fonts-dejavu-core (scripts/setup.sh does)"
)


@functools.cache
def _weasyprint() -> tuple[ModuleType | None, str | None]:
    try:
        import weasyprint
    except OSError as exc:  # Pango or its fonts missing: no PDFs, but HTML still
        return None, f"{exc}; {INSTALL_HINT}"
    except ImportError as exc:
        return None, f"{exc}; pip install weasyprint"
    return weasyprint, None


def pdf_unavailable() -> str | None:
    """Why PDFs cannot be printed here, or None when they can."""
    return _weasyprint()[1]


@functools.cache
def _font_config():
    # fonts are looked up once per process, not once per document
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration()


@functools.lru_cache(maxsize=4)
def _stylesheet(text: str):
    # every document of a run has the template's same <style>: parsed once (~10% of a PDF)
    weasyprint, _ = _weasyprint()
    return weasyprint.CSS(string=text, font_config=_font_config())


def _split_style(html: str) -> tuple[str, str | None]:
    """The page without its first <style> block, and that block's CSS."""
    match = _STYLE.search(html)
    if match is None:
        return html, None
    return html[: match.start()] + html[match.end() :], match.group(1)


def print_pdf(html_path: Path, pdf_path: Path) -> Path:
    """One PDF from one HTML file; written beside and renamed, so never half a file."""
    weasyprint, reason = _weasyprint()
    if weasyprint is None:
        raise RuntimeError(f"PDF documents need WeasyPrint: {reason}")
    html_path, pdf_path = Path(html_path), Path(pdf_path)
    partial = pdf_path.with_suffix(".pdf.partial")
    html, css = _split_style(html_path.read_text(encoding="utf-8"))
    sheets = [_stylesheet(css)] if css is not None else []
    document = weasyprint.HTML(string=html, base_url=None)
    document.write_pdf(partial, stylesheets=sheets, font_config=_font_config())
    partial.replace(pdf_path)
    return pdf_path


def _print_chunk(pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [str(print_pdf(Path(html), Path(pdf))) for html, pdf in pairs]


def print_pdfs(
    pairs: Sequence[tuple[Path, Path]], workers: int | None = None, progress=None
) -> list[Path]:
    """Print each (html, pdf) pair; returns the PDFs written, in order. `progress` hears of
    every thousandth PDF (10,000 take minutes)."""
    if not pairs:
        return []
    workers = workers or os.cpu_count() or 1
    if workers < 2 or len(pairs) < POOL_FROM:
        return [print_pdf(html, pdf) for html, pdf in pairs]
    text_pairs = [(str(html), str(pdf)) for html, pdf in pairs]
    chunks = [text_pairs[i : i + _CHUNK] for i in range(0, len(text_pairs), _CHUNK)]
    spawn = multiprocessing.get_context("spawn")
    printed: list[Path] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=spawn) as pool:
        for done in pool.map(_print_chunk, chunks):
            before = len(printed)
            printed += [Path(p) for p in done]
            if progress and len(printed) // 1000 > before // 1000:
                progress(f"{len(printed) // 1000 * 1000} of {len(pairs)} PDFs printed")
    return printed
