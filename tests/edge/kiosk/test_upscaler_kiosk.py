"""The kiosk's large pictures through the bundle's learned upscaler, on a real server on loopback and in chromium:
`?scale=2` is the int8 upscaler's enlargement (`?scale=4` adds the bilinear kernel, odd scales stay bilinear),
`/api/info` tells the page, and the detail view shows the 2x picture. Bad inputs tried: a bundle whose upscaler
file is damaged (the kiosk serves bilinear enlargements and says why in /healthz), a bundle without one."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import test_kiosk_browser
from fixtures_kiosk import start_kiosk
from playwright.sync_api import Page, expect
from test_kiosk_api import png_pixels

from edge.bundle import load_bundle
from edge.kernels import upscale
from edge.kiosk.server import BackgroundServer
from edge.upscaler import Upscaler

page = test_kiosk_browser.page  # the page fixture: a touch-screen context that fails on JavaScript errors


@pytest.fixture(scope="module")
def server(tiny_upscaler_bundle: Path) -> Iterator[BackgroundServer]:
    srv = start_kiosk(tiny_upscaler_bundle, grid_size=6, attract_idle_s=600.0)
    yield srv
    srv.stop()


def _design(client: httpx.Client) -> dict:
    return client.post("/api/generate", json={"n": 1, "seed": 3}).json()["designs"][0]


def test_scale_2_is_the_learned_upscalers_picture(server: BackgroundServer, tiny_upscaler_bundle: Path) -> None:
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        assert client.get("/api/info").json()["ui"]["sharp_2x"] is True
        assert client.get("/healthz").json()["upscaler"] == {"available": True, "reason": None}
        design = _design(client)
        small = png_pixels(client.get(design["url"]).content)
        two = png_pixels(client.get(design["url"], params={"scale": 2}).content)
        four = png_pixels(client.get(design["url"], params={"scale": 4}).content)
        three = png_pixels(client.get(design["url"], params={"scale": 3}).content)
    learned = Upscaler(load_bundle(tiny_upscaler_bundle)).upscale2x(small)
    assert two.shape == (64, 64, 3) and (two == learned).all()
    assert not (two == upscale(small, 2, mode="bilinear")).all()  # not the bilinear kernel's picture
    assert (four == upscale(learned, 2, mode="bilinear")).all()
    assert (three == upscale(small, 3, mode="bilinear")).all()


def test_a_damaged_upscaler_leaves_bilinear_enlargements_and_says_why(tiny_upscaler_bundle: Path,
                                                                      tmp_path: Path) -> None:
    damaged = Path(shutil.copytree(tiny_upscaler_bundle, tmp_path / "damaged"))
    (damaged / "upscaler_b1.tflite").write_bytes(b"TFL3 but not a model")
    srv = start_kiosk(damaged)
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as client:
            assert client.get("/api/info").json()["ui"]["sharp_2x"] is False
            health = client.get("/healthz").json()
            assert health["status"] == "ok" and health["upscaler"]["available"] is False
            assert "upscaler_b1.tflite is truncated" in health["upscaler"]["reason"]
            design = _design(client)
            small = png_pixels(client.get(design["url"]).content)
            two = png_pixels(client.get(design["url"], params={"scale": 2}).content)
    finally:
        srv.stop()
    assert (two == upscale(small, 2, mode="bilinear")).all()


def test_the_detail_view_shows_the_2x_picture(page: Page, server: BackgroundServer) -> None:
    page.goto(f"{server.url}/?idle=600")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=30000)
    page.tap("#grid .tile >> nth=0")
    expect(page.locator("#view-detail")).to_be_visible()
    assert (page.get_attribute("#detail-img", "src") or "").endswith("?scale=2")
    page.wait_for_function("() => document.querySelector('#detail-img').naturalWidth > 0")
    assert page.eval_on_selector("#detail-img", "i => i.naturalWidth") == 64
