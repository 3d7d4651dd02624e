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


# A hash of the pixels an <img> shows now (drawn onto a canvas): an MJPEG stream is live when it changes.
_IMAGE_HASH = """(selector) => {
    const img = document.querySelector(selector);
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    const g = canvas.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, canvas.width, canvas.height).data;
    let h = 0;
    for (let i = 0; i < d.length; i += 3) h = (h * 31 + d[i]) >>> 0;
    return h;
}"""


def wait_for_a_new_frame(page, selector: str, timeout_ms: int = 15000) -> None:
    """Wait until the picture in `selector` (a live MJPEG <img>) differs from the one it shows now."""
    first = page.evaluate(_IMAGE_HASH, selector)
    page.wait_for_function(f"(({_IMAGE_HASH})({selector!r})) !== {first}", timeout=timeout_ms)
