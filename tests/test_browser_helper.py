"""The browser tests' screenshot helper (tests/_browser.py): Chromium's transient capture
failure is tried again, any other error is raised at once, and the last failure is kept."""

from __future__ import annotations

import pytest
from _browser import TRANSIENT_CAPTURE_ERROR, screenshot
from playwright.sync_api import Error


class _Page:
    """Fails its first ``failures`` captures with ``message``, then writes the file."""

    def __init__(self, failures: int, message: str) -> None:
        self.failures, self.message, self.calls = failures, message, 0

    def screenshot(self, path: str, full_page: bool) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise Error(self.message)
        with open(path, "wb") as out:
            out.write(b"png")


def test_a_transient_capture_failure_is_tried_again(tmp_path):
    page = _Page(2, f"Page.screenshot: Protocol error: {TRANSIENT_CAPTURE_ERROR}")
    screenshot(page, tmp_path / "a.png", full_page=True)
    assert page.calls == 3 and (tmp_path / "a.png").read_bytes() == b"png"


def test_other_errors_and_the_last_attempt_are_raised(tmp_path):
    other = _Page(1, "Page.screenshot: Target closed")
    with pytest.raises(Error, match="Target closed"):
        screenshot(other, tmp_path / "b.png")
    assert other.calls == 1
    stubborn = _Page(5, TRANSIENT_CAPTURE_ERROR)
    with pytest.raises(Error, match=TRANSIENT_CAPTURE_ERROR):
        screenshot(stubborn, tmp_path / "c.png", attempts=3)
    assert stubborn.calls == 3 and not (tmp_path / "c.png").exists()
