"""Print an explanation's HTML to a one-page A4 PDF with Debian's Chromium (Playwright).

Chromium starts headless with no background networking, and the page may load nothing: every
request it would make is aborted (the HTML carries its style inline). Before printing, the page
is laid out as print on an A4-wide viewport and its density is stepped down (``data-density``
on ``<html>``: normal, compact, tight) until the sheet fits one page.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.errors import UsageError

log = logging.getLogger(__name__)

CHROMIUM = Path("/usr/bin/chromium")  # Debian's package `chromium`; never a downloaded browser
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
)
A4_PX = (794, 1123)  # A4 in CSS pixels (96 per inch): 210 x 297 mm
DENSITIES = ("normal", "compact", "tight")
_SHEET_HEIGHT = "document.querySelector('.sheet').getBoundingClientRect().height"


class BrowserMissing(UsageError):
    """The PDF cannot be printed here: no Chromium (or no Playwright) to print it with."""


def print_pdf(html: str, browser: Path = CHROMIUM) -> tuple[bytes, str | None]:
    """The PDF of ``html`` on A4 and the density it was printed at: the first that fits one
    page, None when even the tightest does not (printed tight, on more pages). BrowserMissing
    when ``browser`` is not there or Playwright is not installed."""
    if not Path(browser).is_file():
        raise BrowserMissing(f"Chromium not found at {browser} (Debian package chromium)")
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        raise BrowserMissing("the Python package playwright is not installed") from None
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(
                executable_path=str(browser), headless=True, args=list(CHROMIUM_ARGS)
            )
            try:
                context = launched.new_context(
                    viewport={"width": A4_PX[0], "height": A4_PX[1]}, offline=True
                )
                context.route("**/*", lambda route: route.abort())
                page = context.new_page()
                page.emulate_media(media="print")
                page.set_content(html, wait_until="load")
                density = _fit(page)
                pdf = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
            finally:
                launched.close()
    except Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"Chromium at {browser} could not print the PDF: {first}") from None
    return pdf, density


def _fit(page) -> str | None:
    """Step the density down until the sheet is no taller than one A4 page: that density, or
    None (left at the tightest) when none fits."""
    for density in DENSITIES:
        page.evaluate(f"document.documentElement.dataset.density = {density!r}")
        height = float(page.evaluate(_SHEET_HEIGHT))
        if height <= A4_PX[1] - 2:  # 2 px below the page: no rounding onto a second page
            return density
    log.warning("explain: the explanation is taller than one A4 page even when tight")
    return None
