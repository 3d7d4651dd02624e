"""Fixture: one headless Debian chromium for the whole session, driven by Playwright.

Playwright's sync API runs an event loop on the calling thread while it is open, so every browser test shares
this one instance instead of opening its own.
"""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        yield b
        b.close()
