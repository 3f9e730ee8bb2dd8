"""Headless Chromium: page screenshots for the tests (PDFs are WeasyPrint's, see pdf.py)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
)


def chromium_path() -> str | None:
    return next((p for p in map(shutil.which, CHROMIUM_NAMES) if p), None)


def _run_chromium(browser: str, args: list[str], html_path: Path, timeout: float) -> None:
    with tempfile.TemporaryDirectory(prefix="meterbook-chromium-") as profile:
        command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        command.append(Path(html_path).resolve().as_uri())
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"chromium failed on {html_path} (exit {done.returncode}): {tail[0]}")


def screenshot(
    html_path: Path, png_path: Path, width: int = 1000, height: int = 1300, timeout: float = 60
) -> Path:
    """A PNG of the page as a person would see it (used by the tests)."""
    browser = chromium_path()
    if browser is None:
        raise RuntimeError("screenshots need Chromium: apt-get install chromium")
    _run_chromium(
        browser, [f"--screenshot={png_path}", f"--window-size={width},{height}"], html_path, timeout
    )
    return Path(png_path)
