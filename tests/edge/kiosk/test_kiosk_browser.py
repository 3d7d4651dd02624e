"""The kiosk page's flows in a real browser: Debian's chromium driven by Playwright against a real kiosk server."""

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
    count = len(first)
    assert count == page.evaluate("state.layout.n") >= 4  # as many as the screen holds
    assert decoded_images(page, "#grid .tile img") == [size] * count

    page.tap("#btn-new")
    page.wait_for_function("ids => document.querySelector('#grid .tile').dataset.id !== ids[0]", arg=first)
    second = tile_ids(page)
    assert len(second) == count and not set(second) & set(first)
    assert decoded_images(page, "#grid .tile img") == [size] * count

    page.tap("#grid .tile >> nth=2")
    expect(page.locator("#view-detail")).to_be_visible()
    assert page.url.endswith(f"/d/{second[2]}")
    assert page.text_content("#detail-id") == second[2]  # the ID, small, as a share code
    assert decoded_images(page, "#detail-img") == [size]
    save = page.locator("#btn-save")
    href = save.get_attribute("href") or ""
    assert href.startswith(f"/api/design/{second[2]}.png?scale=") and int(href.rsplit("=", 1)[1]) > 1
    saved = httpx.get(server.url + href)
    assert saved.status_code == 200 and saved.headers["content-type"] == "image/png"

    page.tap("#btn-more")
    expect(page.locator("#grid-title")).to_have_text("More like this")
    neighbours = tile_ids(page)
    assert len(neighbours) == count and all(f".n{j}-" in i for j, i in enumerate(neighbours))
    assert all(i.endswith(second[2].split(".", 2)[2]) for i in neighbours)  # all near the tapped design
    assert decoded_images(page, "#grid .tile img") == [size] * count

    page.tap("#grid .tile >> nth=0")
    page.tap("#btn-mix")
    expect(page.locator("#banner")).to_be_visible()
    expect(page.locator("#grid .tile >> nth=0")).to_have_class("tile picked")  # the first pick stands out
    assert page.get_attribute("#banner-pick", "src") == f"/api/design/{neighbours[0]}.png"
    page.tap("#grid .tile >> nth=0")  # the same one again: said, not mixed with itself
    expect(page.locator("#toast")).to_contain_text("first pick")
    page.tap("#grid .tile >> nth=4")
    expect(page.locator("#view-mix")).to_be_visible()
    steps = tile_ids(page, "#mix-strip .tile")
    assert len(steps) == MIX_STEPS + 1 and all(f".m{k}-{MIX_STEPS}." in i for k, i in enumerate(steps))
    assert decoded_images(page, "#mix-strip .tile img") == [size] * (MIX_STEPS + 1)

    page.tap("#mix-strip .tile >> nth=2")  # a step of the mix is a design like any other
    expect(page.locator("#view-detail")).to_be_visible()
    assert page.text_content("#detail-id") == steps[2]
    page.tap("#btn-back")  # Back returns to where the shopper came from: the mix strip, still there ...
    expect(page.locator("#view-mix")).to_be_visible()
    assert tile_ids(page, "#mix-strip .tile") == steps
    page.go_back()  # ... then (the browser's Back too) the design the mix started from
    expect(page.locator("#view-detail")).to_be_visible()
    assert page.text_content("#detail-id") == neighbours[0]
    expect(page.locator("#banner")).to_be_hidden()
    page.tap("#btn-back")
    expect(page.locator("#view-grid")).to_be_visible()
    assert tile_ids(page) == neighbours and page.url == f"{server.url}/"


def test_the_tiles_stay_in_place_while_new_designs_load(page: Page, server: BackgroundServer) -> None:
    page.goto(f"{server.url}/?idle=600")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20000)
    before = tile_ids(page)
    release = []
    page.route("**/api/generate", lambda route: release.append(route))  # a slow link: held until released
    page.tap("#btn-new")
    expect(page.locator("#grid")).to_have_attribute("aria-busy", "true")
    expect(page.locator("#grid-status")).to_have_text("Designing…")
    expect(page.locator("#btn-new")).to_be_disabled()
    assert tile_ids(page) == before  # the old designs stay, dimmed, not blank tiles
    page.wait_for_function("document.querySelector('#grid .tile img').complete")
    assert release
    release[0].continue_()
    page.wait_for_function("ids => document.querySelector('#grid .tile').dataset.id !== ids[0]", arg=before)
    expect(page.locator("#grid")).to_have_attribute("aria-busy", "false")
    assert len(tile_ids(page)) == len(before)


def test_mixing_two_near_identical_designs_says_so(page: Page, server: BackgroundServer) -> None:
    page.goto(f"{server.url}/?idle=600")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20000)
    parent = tile_ids(page)[0]
    close = httpx.post(f"{server.url}/api/neighbours", json={"id": parent, "n": 1, "radius": 0.001}).json()
    twin = close["designs"][0]
    page.evaluate("([a, b]) => mix(a, b)", [page.evaluate("state.designs[0]"), twin])
    expect(page.locator("#view-mix")).to_be_visible()
    expect(page.locator("#mix-note")).to_contain_text("almost the same")
    page.tap("#btn-mix-back")
    page.evaluate("([a, b]) => mix(a, b)", page.evaluate("[state.designs[0], state.designs[3]]"))
    page.wait_for_function("window.atelier.mixSpread !== undefined && document.querySelector('#mix-strip .tile')")
    page.wait_for_function("document.querySelector('#view-mix') && !document.querySelector('#view-mix').hidden")
    page.wait_for_timeout(500)
    assert page.text_content("#mix-note") == ""  # two different designs: nothing to warn about


def test_a_shared_design_url_opens_that_design_and_bad_links_get_plain_words(
    page: Page, server: BackgroundServer, tmp_path: Path
) -> None:
    design = httpx.post(f"{server.url}/api/generate", json={"n": 1, "seed": 4}).json()["designs"][0]
    page.goto(f"{server.url}{design['page']}?idle=600")
    expect(page.locator("#view-detail")).to_be_visible(timeout=20000)
    assert page.text_content("#detail-id") == design["id"]
    assert decoded_images(page, "#detail-img") == [server.service.bundle.size_px]
    page.tap("#btn-back")  # the grid behind a shared design is there to go back to
    expect(page.locator("#view-grid")).to_be_visible()

    old = design["id"].replace(server.service.bundle.model_id, "0123456789ab", 1)
    for link, title in ((f"/d/{old}", "This design is from an earlier collection"),
                        ("/d/not-a-design", "This design link does not work")):
        page.goto(f"{server.url}{link}?idle=600")
        expect(page.locator("#view-message")).to_be_visible(timeout=20000)
        expect(page.locator("#message-title")).to_have_text(title)
        text = page.text_content("#view-message") or ""
        for developer_words in ("design ID", "MODEL.CLASS", "serves model", "409", "400", old[:12]):
            assert developer_words not in text
        page.tap("#btn-message-ok")  # a way on
        expect(page.locator("#view-grid")).to_be_visible()
        assert page.url == f"{server.url}/"


def test_attract_mode_starts_when_idle_and_a_touch_starts_afresh(
    page: Page, server: BackgroundServer, tmp_path: Path
) -> None:
    page.goto(server.url)
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20000)
    page.evaluate("""() => { const img = document.createElement('img'); img.id = 'live';
                             img.src = '/camera.mjpg'; document.body.append(img); }""")  # a view with the camera
    page.evaluate("openDesign(state.designs[1], true)")  # the last shopper left a design open
    before = tile_ids(page)
    expect(page.locator("#attract")).to_be_visible(timeout=IDLE_S * 1000 + 15000)
    assert page.get_attribute("#live", "src") is None  # the camera stream closed with the shopper gone
    page.wait_for_function("window.atelier.attractFrames >= 20", timeout=20000)
    stats = page.evaluate("window.atelier")
    assert stats["attractStarts"] == 1 and stats["errors"] == 0
    more = page.locator("#btn-more").bounding_box()
    assert more is not None
    # Wake the kiosk with a touch right where a button sits under the overlay: it wakes, it does not press it.
    page.touchscreen.tap(more["x"] + more["width"] / 2, more["y"] + more["height"] / 2)
    expect(page.locator("#attract")).to_be_hidden()
    page.wait_for_function("ids => document.querySelector('#grid .tile').dataset.id !== ids[0]", arg=before)
    expect(page.locator("#view-grid")).to_be_visible()
    assert not set(tile_ids(page)) & set(before)  # a fresh grid, nothing of the last shopper's
    assert page.url == f"{server.url}/" and page.evaluate("state.stack.length") == 1


def test_shoppers_get_no_camera_view_and_the_inspire_entry_waits_for_an_encoder(
    page: Page, server: BackgroundServer
) -> None:
    page.goto(f"{server.url}/?idle=600")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=20000)
    assert page.locator("#btn-camera, #view-camera").count() == 0  # the dead end is gone for shoppers
    expect(page.locator("#inspire-entry")).to_be_hidden()  # this bundle has no encoder
    assert page.evaluate("[...document.images].filter(i => (i.src || '').includes('camera.mjpg')).length") == 0


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
        expect(page.locator("#grid-title")).to_have_text("New designs")  # the chips say what it designs
        before = tile_ids(page)
        page.tap("#classes .chip[data-class-id='1']")
        page.wait_for_function("ids => document.querySelector('#grid .tile').dataset.id !== ids[0]", arg=before)
        expect(page.locator("#grid-title")).to_have_text(f"New {names[1]} designs")
        tags = page.eval_on_selector_all("#grid .tile .tag", "tags => tags.map(t => t.textContent)")
        assert tags == [names[1]] * len(before)
        assert decoded_images(page, "#grid .tile img") == [srv.service.bundle.size_px] * len(before)
    finally:
        srv.stop()
