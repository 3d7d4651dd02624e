"""Design from my garment in a real browser: chromium (Playwright) against a real kiosk serving the committed
default bundle, its synthetic camera holding a plain t-shirt of a known colour."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import test_kiosk_browser
from playwright.sync_api import Page, expect

from edge.bundle import load_bundle
from edge.kiosk.config import KioskConfig
from edge.kiosk.server import BackgroundServer
from edge.kiosk.service import KioskService

pytestmark = pytest.mark.browser

DEFAULT = Path(__file__).resolve().parents[3] / "models" / "default"
GARMENT_RGB = (30, 60, 170)  # a blue t-shirt
page = test_kiosk_browser.page  # the page fixture: a touch-screen context that fails on JavaScript errors


def _server(bundle_dir: Path, camera: str) -> BackgroundServer:
    config = KioskConfig(bundle=bundle_dir, port=0, grid_size=6, attract_idle_s=600.0, camera=camera)
    return BackgroundServer(KioskService(config, load_bundle(bundle_dir))).start()


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    colour = "".join(f"{c:02x}" for c in GARMENT_RGB)
    srv = _server(DEFAULT, f"synthetic://?size=640x480&fps=15&garment=t-shirt&colour={colour}")
    yield srv
    srv.stop()


def centre_colour(client: httpx.Client, url: str) -> np.ndarray:
    """Mean RGB of the central quarter of a design (the garment's body, away from the background)."""
    data = client.get(url).content
    rgb = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float64)
    s = rgb.shape[0]
    return rgb[s * 3 // 8 : s * 5 // 8, s * 3 // 8 : s * 5 // 8].reshape(-1, 3).mean(axis=0)


def test_designs_from_the_camera_take_the_garments_colour(page: Page, server: BackgroundServer,
                                                          tmp_path: Path) -> None:
    page.goto(f"{server.url}/?idle=600")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=30000)
    entry = page.locator("#inspire-entry")
    expect(entry).to_be_visible(timeout=10000)  # the default bundle has an encoder
    entry.tap()
    expect(page.locator("#inspire")).to_be_visible()
    expect(page.locator(".inspire-guide")).to_be_visible()  # the framing guide over the live preview
    assert page.get_attribute("#inspire-preview", "src") == "/camera.mjpg?view=live"  # the frame alone, large
    page.wait_for_function("() => document.querySelector('#inspire-preview').naturalWidth > 0")
    assert page.eval_on_selector("#inspire-preview", "i => [i.naturalWidth, i.naturalHeight]") == [640, 480]
    for width, height in ((1280, 800), (800, 480), (1080, 1920)):  # the guide marks the centre square it crops
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(200)
        guide = page.eval_on_selector(".inspire-guide", "g => g.getBoundingClientRect().toJSON()")
        live = page.eval_on_selector("#inspire-preview", "i => i.getBoundingClientRect().toJSON()")
        assert abs(guide["height"] - live["height"]) < 3 and abs(guide["width"] - live["height"]) < 3, (width, live)
        assert abs(guide["x"] - (live["x"] + live["width"] / 8)) < 3 and abs(guide["y"] - live["y"]) < 3, width
    page.set_viewport_size({"width": 1280, "height": 800})
    page.tap("#inspire-shoot")
    expect(page.locator("#inspire-count")).to_be_visible()  # the countdown
    expect(page.locator("#inspire-result")).to_be_visible(timeout=20000)
    ids = page.evaluate("window.atelier.inspire.lastDesigns")
    assert len(ids) == 6 and ".e" in ids[0]
    page.wait_for_function("() => [...document.querySelectorAll('#inspire-result img')].every("
                           "i => i.complete && i.naturalWidth > 0)", timeout=15000)
    assert page.eval_on_selector("#inspire-input", "i => i.naturalWidth") == 128  # what the encoder saw
    page.screenshot(path=str(tmp_path / "inspire.png"))
    keep = os.environ.get("ATELIER_SCREENSHOTS")  # docs/inspire-kiosk.jpg is made this way
    if keep:
        shutil.copy2(tmp_path / "inspire.png", Path(keep) / "inspire-kiosk.png")

    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        ours = [centre_colour(client, f"/api/design/{i}.png") for i in ids]
        random_ids = [d["id"] for seed in (1, 2) for d in
                      client.post("/api/generate", json={"n": 6, "seed": seed}).json()["designs"]]
        random = [centre_colour(client, f"/api/design/{i}.png") for i in random_ids]
    target = np.asarray(GARMENT_RGB, np.float64)
    d_ours = float(np.mean([np.linalg.norm(c - target) for c in ours]))
    d_random = float(np.mean([np.linalg.norm(c - target) for c in random]))
    assert d_ours < d_random, (d_ours, d_random)

    # A design from the garment opens in the page's own detail view; "More like this" works on it.
    page.tap("#inspire-designs .tile >> nth=0")
    expect(page.locator("#view-detail")).to_be_visible()
    assert page.text_content("#detail-id") == ids[0]
    page.tap("#btn-more")
    page.wait_for_function("id => [...document.querySelectorAll('#grid .tile')].length > 0 && "
                           "document.querySelector('#grid .tile').dataset.id.includes(id.split('.').pop())",
                           arg=ids[0], timeout=15000)


def test_a_bad_photo_shows_the_kiosks_message(page: Page, server: BackgroundServer, tmp_path: Path) -> None:
    page.goto(f"{server.url}/?idle=600")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=30000)
    page.tap("#inspire-entry")
    not_a_photo = tmp_path / "notes.txt"
    not_a_photo.write_text("this is not a picture")
    page.set_input_files("#inspire-file", str(not_a_photo))
    expect(page.locator("#inspire-msg")).to_contain_text("not a photo", timeout=15000)
    assert page.evaluate("window.atelier.inspire.errors") == 1


def test_the_entry_is_hidden_without_an_encoder(page: Page, tiny_bundle: Path) -> None:
    srv = _server(tiny_bundle, "synthetic://?fps=15")
    try:
        page.goto(f"{srv.url}/?idle=600")
        expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=30000)
        page.wait_for_function("() => window.atelier.inspire && window.atelier.inspire.available === false")
        expect(page.locator("#inspire-entry")).to_be_hidden()
    finally:
        srv.stop()


def test_one_entry_button_and_attract_mode_closes_the_view(page: Page, server: BackgroundServer) -> None:
    page.goto(f"{server.url}/?idle=2")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=30000)
    expect(page.locator("#inspire-entry")).to_be_visible(timeout=10000)
    assert page.get_by_role("button", name="Design from my garment").count() == 1  # the page's own, not a second
    page.tap("#inspire-entry")
    expect(page.locator("#inspire")).to_be_visible()
    expect(page.locator("#attract")).to_be_visible(timeout=15000)  # the shopper walked away
    expect(page.locator("#inspire")).to_be_hidden()
    assert page.get_attribute("#inspire-preview", "src") is None  # its camera stream is closed
