"""Debian's Chromium for the browser tests (never a downloaded browser), started so that it
makes no connection of its own: the machine has no network, and background requests would fail."""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-domain-reliability",
    "--no-first-run",
    "--no-pings",
]


def launched_chromium():
    """Debian's Chromium, headless, for a module-scoped ``browser`` fixture (yields it; skips the
    test when the package is not installed)."""
    import pytest

    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not installed (.ci/run installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


# Chromium now and then refuses a capture while it composites the page (seen once in a full
# `make test` on 2 busy cores, the same test passing on every rerun): the capture is tried again.
TRANSIENT_CAPTURE_ERROR = "Unable to capture screenshot"


def screenshot(page, path: Path, *, full_page: bool = False, attempts: int = 3) -> None:
    """``page.screenshot`` to ``path``, tried again (up to ``attempts`` times, half a second
    apart) when Chromium's capture fails transiently; any other error is raised at once."""
    import time

    from playwright.sync_api import Error

    for attempt in range(1, attempts + 1):
        try:
            page.screenshot(path=str(path), full_page=full_page)
            return
        except Error as exc:
            if TRANSIENT_CAPTURE_ERROR not in str(exc) or attempt == attempts:
                raise
            time.sleep(0.5)
