"""Headless Chromium for tests and benchmarks that open agentscale's HTML reports.

Debian's Chromium (`apt-get install chromium`; `make browser` does it), driven by Playwright's Python
client with `executable_path` — Playwright's own browser download is not needed. The flags are the
ones that work on machines without a sandbox for root and without outside network: no background
traffic that a closed network would refuse.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@contextmanager
def headless_chromium(executable: str = CHROMIUM) -> Iterator[Browser]:
    """A browser for the block. Playwright's sync API runs an event loop in this thread while it is
    open, so start it after any `asyncio.run` the caller needs (runs to report on)."""
    from playwright.sync_api import sync_playwright

    if shutil.which(executable) is None:
        raise RuntimeError(f"{executable} is missing: `make browser` installs Debian's chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=list(CHROMIUM_FLAGS))
        try:
            yield browser
        finally:
            browser.close()
