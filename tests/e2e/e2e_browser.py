"""What a person sees in the Dagster UI, read by headless Chromium (Debian's, driven by
Playwright's Python package; no browser is ever downloaded).

`look_at_the_ui(port, run_id)` opens the month_end_close job's runs page and the partitions
page of the invoices asset, and returns what it found: whether the run is listed on the job's
page, and whether the period's partition is materialized by that run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from e2e_helpers import PERIOD

from orchestration.billing.documents.browser import CHROMIUM_FLAGS

CHROMIUM = Path("/usr/bin/chromium")
# the product's own flags (no sandbox, nothing that reaches the network); Playwright adds
# headless itself
CHROMIUM_ARGS = [flag for flag in CHROMIUM_FLAGS if flag != "--headless"]
PAGE_TIMEOUT_MS = 120_000  # the UI's JavaScript is heavy, and two cores are busy with closes
JOB_RUNS = "/locations/meterbook/jobs/month_end_close/runs"
INVOICE_PARTITION = f"/assets/fct_invoices?view=partitions&partition={PERIOD}"


@dataclass(frozen=True)
class BrowserOutcome:
    skipped: str | None  # why no browser looked, or None
    run_on_job_page: bool = False
    partition_panel: str = ""  # the text of the invoices asset's page for the period
    job_page: str = ""
    error: str | None = None  # the browser itself failed (the browser test fails with it)


def browser_missing() -> str | None:
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if not _playwright_importable():
        return "Playwright's Python package is not installed"
    return None


def _playwright_importable() -> bool:
    try:
        import playwright.sync_api  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def look_at_the_ui(port: int, run_id: str) -> BrowserOutcome:
    try:
        return _look(port, run_id)
    except Exception as exc:  # noqa: BLE001 (only the browser test should fail for it)
        return BrowserOutcome(None, error=f"{type(exc).__name__}: {exc}")


def _look(port: int, run_id: str) -> BrowserOutcome:
    missing = browser_missing()
    if missing:
        return BrowserOutcome(skipped=missing)
    from playwright.sync_api import TimeoutError as PageTimeout  # noqa: PLC0415
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    base, short_id = f"http://127.0.0.1:{port}", run_id[:8]  # the UI shows 8 characters
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
            page.goto(base + JOB_RUNS)
            try:
                page.get_by_text(short_id, exact=True).first.wait_for()
                listed = True
            except PageTimeout:
                listed = False
            job_page = page.inner_text("body")
            page.goto(base + INVOICE_PARTITION)
            with contextlib.suppress(PageTimeout):  # the test says what the page showed instead
                page.get_by_text("Latest materialization").first.wait_for()
                page.get_by_text(short_id, exact=True).first.wait_for()
            panel = page.inner_text("body")
        finally:
            browser.close()
    return BrowserOutcome(None, listed, panel, job_page)
