"""The kiosk page in a real browser: Debian's chromium driven by Playwright against a real kiosk server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures_kiosk import start_kiosk
from playwright.sync_api import Browser, Page, expect

from edge.kiosk.server import BackgroundServer

pytestmark = pytest.mark.browser

GRID = 6
MIX_STEPS = 4
IDLE_S = 2.0


def _server(bundle_dir: Path) -> BackgroundServer:
    return start_kiosk(bundle_dir, grid_size=GRID, mix_steps=MIX_STEPS, attract_idle_s=IDLE_S, attract_fps=15.0,
                       camera="synthetic://?fps=15")


@pytest.fixture(scope="module")
def server(tiny_bundle: Path) -> Iterator[BackgroundServer]:
    srv = _server(tiny_bundle)
    yield srv
    srv.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, has_touch=True)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def decoded_images(page: Page, selector: str) -> list[int]:
    """naturalWidth of every <img> under `selector` once all have loaded (0 = failed to decode)."""
    page.wait_for_function(
        "sel => [...document.querySelectorAll(sel)].every(i => i.complete)", arg=selector, timeout=15000)
    return page.eval_on_selector_all(selector, "imgs => imgs.map(i => i.naturalWidth)")


def tile_ids(page: Page, selector: str = "#grid .tile") -> list[str]:
    return page.eval_on_selector_all(selector, "tiles => tiles.map(t => t.dataset.id)")


def test_generate_open_more_like_this_and_mix(page: Page, server: BackgroundServer, tmp_path: Path) -> None:
    size = server.service.bundle.size_px
    page.goto(f"{server.url}/?idle=600")  # no attract mode in the middle of this walk-through
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20000)
    first = tile_ids(page)
    assert len(first) == GRID
    assert decoded_images(page, "#grid .tile img") == [size] * GRID

    page.tap("#btn-new")
    page.wait_for_function("ids => document.querySelector('#grid .tile').dataset.id !== ids[0]", arg=first)
    second = tile_ids(page)
    assert len(second) == GRID and not set(second) & set(first)
    assert decoded_images(page, "#grid .tile img") == [size] * GRID
    page.screenshot(path=str(tmp_path / "grid.png"))

    page.tap("#grid .tile >> nth=2")
    expect(page.locator("#view-detail")).to_be_visible()
    assert page.url.endswith(f"/d/{second[2]}")
    assert page.text_content("#detail-id") == second[2]
    assert decoded_images(page, "#detail-img") == [size]
    save = page.locator("#btn-save")
    href = save.get_attribute("href") or ""
    assert href.startswith(f"/api/design/{second[2]}.png?scale=") and int(href.rsplit("=", 1)[1]) > 1
    saved = httpx.get(server.url + href)
    assert saved.status_code == 200 and saved.headers["content-type"] == "image/png"
    page.screenshot(path=str(tmp_path / "detail.png"))

    page.tap("#btn-more")
    expect(page.locator("#grid-title")).to_have_text("More like this")
    neighbours = tile_ids(page)
    assert len(neighbours) == GRID and all(f".n{j}-" in i for j, i in enumerate(neighbours))
    assert all(i.endswith(second[2].split(".", 2)[2]) for i in neighbours)  # all near the tapped design
    assert decoded_images(page, "#grid .tile img") == [size] * GRID

    page.tap("#grid .tile >> nth=0")
    page.tap("#btn-mix")
    expect(page.locator("#banner")).to_be_visible()
    page.tap("#grid .tile >> nth=4")
    expect(page.locator("#view-mix")).to_be_visible()
    steps = tile_ids(page, "#mix-strip .tile")
    assert len(steps) == MIX_STEPS + 1 and all(f".m{k}-{MIX_STEPS}." in i for k, i in enumerate(steps))
    assert decoded_images(page, "#mix-strip .tile img") == [size] * (MIX_STEPS + 1)
    page.screenshot(path=str(tmp_path / "mix.png"))

    page.tap("#mix-strip .tile >> nth=2")  # a step of the mix is a design like any other
    expect(page.locator("#view-detail")).to_be_visible()
    assert page.text_content("#detail-id") == steps[2]
    page.go_back()  # the browser's back button walks the history: the grid the mix was picked from ...
    expect(page.locator("#view-grid")).to_be_visible()
    page.go_back()  # ... and the design the mix started from
    expect(page.locator("#view-detail")).to_be_visible()
    assert page.text_content("#detail-id") == neighbours[0]
    page.tap("#btn-back")
    expect(page.locator("#view-grid")).to_be_visible()
    assert page.url == f"{server.url}/"


def test_a_shared_design_url_opens_that_design(page: Page, server: BackgroundServer, tmp_path: Path) -> None:
    design = httpx.post(f"{server.url}/api/generate", json={"n": 1, "seed": 4}).json()["designs"][0]
    page.goto(f"{server.url}{design['page']}?idle=600")
    expect(page.locator("#view-detail")).to_be_visible(timeout=20000)
    assert page.text_content("#detail-id") == design["id"]
    assert decoded_images(page, "#detail-img") == [server.service.bundle.size_px]

    page.goto(f"{server.url}/d/not-a-design?idle=600")
    expect(page.locator("#toast")).to_contain_text("bad design ID", timeout=20000)
    expect(page.locator("#view-grid")).to_be_visible()


def test_attract_mode_starts_when_idle_and_a_touch_ends_it(
    page: Page, server: BackgroundServer, tmp_path: Path
) -> None:
    page.goto(server.url)
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20000)
    expect(page.locator("#attract")).to_be_visible(timeout=IDLE_S * 1000 + 15000)
    page.wait_for_function("window.atelier.attractFrames >= 20", timeout=20000)
    page.screenshot(path=str(tmp_path / "attract.png"))
    stats = page.evaluate("window.atelier")
    assert stats["attractStarts"] == 1 and stats["errors"] == 0
    tile = page.locator("#grid .tile >> nth=0").bounding_box()
    assert tile is not None
    # Wake the kiosk with a touch right where a design sits under the overlay: it wakes, it does not open it.
    page.touchscreen.tap(tile["x"] + tile["width"] / 2, tile["y"] + tile["height"] / 2)
    expect(page.locator("#attract")).to_be_hidden()
    page.wait_for_timeout(300)
    expect(page.locator("#view-grid")).to_be_visible()
    assert page.url == f"{server.url}/"


def test_the_camera_preview_shows_live_frames(page: Page, server: BackgroundServer, tmp_path: Path) -> None:
    page.goto(f"{server.url}/?idle=600")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20000)
    page.tap("#btn-camera")
    expect(page.locator("#view-camera")).to_be_visible()
    page.wait_for_function("document.querySelector('#camera-img').naturalWidth > 0", timeout=15000)
    # Live means the picture keeps changing: a hash of what the <img> shows now, then wait for another one.
    snapshot = """() => {
        const img = document.querySelector('#camera-img');
        const canvas = document.createElement('canvas');
        canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
        const g = canvas.getContext('2d');
        g.drawImage(img, 0, 0);
        const d = g.getImageData(0, 0, canvas.width, canvas.height).data;
        let h = 0;
        for (let i = 0; i < d.length; i += 3) h = (h * 31 + d[i]) >>> 0;
        return h;
    }"""
    first = page.evaluate(snapshot)
    page.wait_for_function(f"({snapshot})() !== {first}", timeout=15000)
    page.screenshot(path=str(tmp_path / "camera.png"))
    page.tap("#btn-camera-back")
    expect(page.locator("#view-grid")).to_be_visible()


def test_class_chips_on_a_conditional_model(
    page: Page, tiny_conditional_bundle: Path, tmp_path: Path
) -> None:
    srv = _server(tiny_conditional_bundle)
    try:
        names = list(srv.service.bundle.class_names or ())
        page.goto(f"{srv.url}/?idle=600")
        expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20000)
        chips = page.locator("#classes .chip")
        expect(chips).to_have_count(len(names) + 1)
        before = tile_ids(page)
        page.tap("#classes .chip[data-class-id='1']")
        page.wait_for_function("ids => document.querySelector('#grid .tile').dataset.id !== ids[0]", arg=before)
        tags = page.eval_on_selector_all("#grid .tile .tag", "tags => tags.map(t => t.textContent)")
        assert tags == [names[1]] * GRID
        assert decoded_images(page, "#grid .tile img") == [srv.service.bundle.size_px] * GRID
        page.screenshot(path=str(tmp_path / "classes.png"))
    finally:
        srv.stop()
