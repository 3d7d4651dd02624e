"""The kiosk page on the three screens it is sold for (1280x800 landscape, 1080x1920 portrait, 800x480), in Debian's
chromium against a real kiosk serving the committed default model: the layout fills the screen (no holes, nothing
off screen, touch targets of at least 48 px), the text meets WCAG AA contrast (computed from the page's real
styles), focus moves in reading order, and the staff panel reaches Roll back without scrolling.

Set ATELIER_SCREENSHOTS=DIR to keep the screenshots (docs/kiosk-*.png are made this way).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures_browser import wait_for_a_new_frame
from fixtures_bundles import models_and_stick
from fixtures_kiosk import start_kiosk
from playwright.sync_api import Browser, Page, expect

from edge.kiosk.config import DEFAULT_BUNDLE
from edge.kiosk.server import BackgroundServer
from edge.kiosk.staff import hash_pin

pytestmark = pytest.mark.browser

PIN = "2468"
SCREENS = [(1280, 800), (1080, 1920), (800, 480)]
MIN_TARGET_PX = 48

# Every visible text element: its colour against the first opaque background behind it (text over a design
# picture is skipped: its background is the picture), and whether it counts as large text (WCAG: 24 px, or
# 18.66 px bold), as [text, ratio, large].
CONTRAST_JS = """
() => {
  const parse = (c) => { const m = c.match(/[\\d.]+/g).map(Number); return m.length > 3 ? m : [...m, 1]; };
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const blend = (fg, bg) => fg.slice(0, 3).map((v, i) => v * fg[3] + bg[i] * (1 - fg[3]));
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.offsetParent && getComputedStyle(el).position !== "fixed") continue;
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || Number(style.opacity) === 0) continue;
    let bg = null, overPicture = false, layers = [];
    for (let n = el; n; n = n.parentElement) {
      const s = getComputedStyle(n);
      if (n !== el && n.querySelector(":scope > img") && n.classList.contains("tile")) overPicture = true;
      const c = parse(s.backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) { bg = c; break; } }
    }
    if (overPicture && layers.length <= 1 && (!layers[0] || layers[0][3] < 0.9)) continue;
    let base = bg ? bg.slice(0, 3) : [255, 255, 255];
    for (const l of layers.reverse()) if (l !== bg) base = blend(l, base);
    const fg = blend(parse(style.color), base);
    const [a, b] = [lum(fg), lum(base)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    out.push([el.textContent.trim().slice(0, 40), Math.round(ratio * 100) / 100, large]);
  }
  return out;
}
"""

TARGETS_JS = """
() => [...document.querySelectorAll("button, a[href], input, .tile")]
  .filter((el) => el.offsetParent !== null)
  .map((el) => { const r = el.getBoundingClientRect();
                 return [el.id || el.className || el.textContent.trim(), r.x, r.y, r.width, r.height]; })
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    tmp = tmp_path_factory.mktemp("screens")
    models, start, _ = models_and_stick(tmp, DEFAULT_BUNDLE, DEFAULT_BUNDLE, "spring-tshirts")
    srv = start_kiosk(start, models_dir=models, camera="synthetic://?fps=10", attract_idle_s=600,
                      staff_pin_hash=hash_pin(PIN, iterations=1000), capture_store=tmp / "captures",
                      capture_min_free_mb=0, usb_roots=str(tmp / "media"))
    yield srv
    srv.stop()


def _open(browser: Browser, server: BackgroundServer, width: int, height: int) -> tuple[Page, list[str]]:
    context = browser.new_context(viewport={"width": width, "height": height}, has_touch=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{server.url}/?idle=600")
    expect(page.locator("body")).to_have_attribute("data-ready", "1", timeout=30000)
    page.wait_for_function("[...document.querySelectorAll('#grid img')].every(i => i.complete && i.naturalWidth)")
    return page, errors


def _shot(page: Page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path))
    keep = os.environ.get("ATELIER_SCREENSHOTS")
    if keep:
        shutil.copy(path, Path(keep) / name)


def _check_on_screen(page: Page, width: int, height: int, where: str) -> None:
    """Nothing scrolls, every control is inside the screen and at least 48 px each way."""
    size = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    assert size[0] <= width and size[1] <= height, f"{where}: the page overflows the screen: {size}"
    for name, x, y, w, h in page.evaluate(TARGETS_JS):
        if "mix-strip" in where and name == "tile":
            continue  # the mix strip scrolls sideways on purpose (its hint is checked)
        assert x >= -1 and y >= -1 and x + w <= width + 1 and y + h <= height + 1, f"{where}: {name} off screen"
        assert w >= MIN_TARGET_PX and h >= MIN_TARGET_PX, f"{where}: {name} is {w:.0f}x{h:.0f} px"


def _check_contrast(page: Page, where: str) -> None:
    measured = page.evaluate(CONTRAST_JS)
    assert measured, "no text found"
    low = [(text, ratio) for text, ratio, large in measured if ratio < (3.0 if large else 4.5)]
    assert not low, f"{where}: text below WCAG AA contrast: {low}"


@pytest.mark.parametrize(("width", "height"), SCREENS)
def test_the_grid_fills_the_screen_and_the_views_fit(
    browser: Browser, server: BackgroundServer, tmp_path: Path, width: int, height: int
) -> None:
    page, errors = _open(browser, server, width, height)
    where = f"{width}x{height}"
    layout = page.evaluate("state.layout")
    tiles = page.eval_on_selector_all("#grid .tile", "ts => ts.map(t => t.getBoundingClientRect().toJSON())")
    assert len(tiles) == layout["cols"] * layout["rows"], "a hole in the grid"
    assert len({round(t["y"]) for t in tiles}) == layout["rows"] and len({round(t["x"]) for t in tiles}) == \
        layout["cols"]
    size_px = server.service.bundle.size_px
    assert all(round(t["width"]) == layout["tile"] <= 4 * size_px for t in tiles)
    # The designs take most of the space under the title: no quarter-filled screen.
    area = page.eval_on_selector("#grid-area", "a => a.getBoundingClientRect().toJSON()")
    covered = sum(t["width"] * t["height"] for t in tiles) / (area["width"] * area["height"])
    assert covered > 0.55 or layout["tile"] == 4 * size_px, f"{where}: designs cover {covered:.0%}"
    bundle = server.service.bundle
    if bundle.conditional:  # what it designs: a chip per class, none chosen yet
        assert page.text_content("#grid-title") == "New designs"
        assert page.locator("#classes .chip").count() >= len(bundle.class_names) > 1
    else:
        assert page.text_content("#grid-title") == "New t-shirt designs"
    assert page.evaluate("getComputedStyle(document.querySelector('#grid img')).imageRendering") == "auto"
    _check_on_screen(page, width, height, f"{where} grid")
    _check_contrast(page, f"{where} grid")
    _shot(page, tmp_path, f"kiosk-{where}.png")

    page.tap("#grid .tile >> nth=1")
    expect(page.locator("#view-detail")).to_be_visible()
    _check_on_screen(page, width, height, f"{where} detail")
    _check_contrast(page, f"{where} detail")
    buttons = page.eval_on_selector_all(".detail-actions .btn", "bs => bs.map(b => b.getBoundingClientRect().toJSON())")
    img = page.eval_on_selector("#detail-img", "i => i.getBoundingClientRect().toJSON()")
    if height > width:  # portrait: the buttons share the width under the picture, two by two
        assert len({round(b["y"]) for b in buttons}) == 2 and all(b["y"] >= img["y"] + img["height"] for b in buttons)
        assert sum(b["width"] for b in buttons[:2]) > 0.8 * width - 2 * 40
    _shot(page, tmp_path, f"kiosk-detail-{where}.png")

    page.tap("#btn-mix")
    expect(page.locator("#banner")).to_be_visible()
    expect(page.locator("#grid .tile.picked")).to_have_count(1)  # the first pick stands out
    _check_contrast(page, f"{where} mix banner")
    page.tap("#grid .tile:not(.picked) >> nth=2")
    expect(page.locator("#view-mix")).to_be_visible()
    page.wait_for_function("[...document.querySelectorAll('#mix-strip img')].every(i => i.complete)")
    page.wait_for_timeout(200)
    _check_on_screen(page, width, height, f"{where} mix-strip")
    overflow = page.eval_on_selector("#mix-strip", "s => s.scrollWidth > s.clientWidth + 4")
    assert page.is_visible("#mix-more") == overflow  # tiles cut off at the edge are announced
    _shot(page, tmp_path, f"kiosk-mix-{where}.png")
    assert not errors, errors


def test_tab_moves_in_reading_order(browser: Browser, server: BackgroundServer) -> None:
    page, errors = _open(browser, server, 1280, 800)
    page.wait_for_function("() => window.atelier.inspire && window.atelier.inspire.available === true")
    chips = page.locator("#classes .chip").count()  # a conditional model's class chips, on the row below
    assert (chips > 0) == bool(server.service.bundle.conditional)
    seen = []
    for _ in range(9 + chips):
        page.keyboard.press("Tab")
        box = page.evaluate("(() => { const r = document.activeElement.getBoundingClientRect(); "
                            "return [document.activeElement.id || document.activeElement.className, r.x, r.y]; })()")
        seen.append(box)
    # The default bundle has an inspire encoder: its entry button comes first in the bar.
    assert [s[0] for s in seen[:3]] == ["inspire-entry", "btn-new", "btn-staff"]
    assert [s[0] for s in seen[3:3 + chips]] == ["chip"] * chips  # then the chips, in reading order
    assert seen[3:3 + chips] == sorted(seen[3:3 + chips], key=lambda s: (round(s[2]), s[1]))
    tiles = [s for s in seen if s[0] == "tile"]
    assert len(tiles) == 6 and tiles == sorted(tiles, key=lambda s: (round(s[2]), s[1]))  # rows, left to right
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # the focused control is visible
    assert not errors, errors


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (800, 480)])
def test_the_staff_panel_fits_and_offers_the_bundles_as_a_list(
    browser: Browser, server: BackgroundServer, tmp_path: Path, width: int, height: int
) -> None:
    page, errors = _open(browser, server, width, height)
    page.tap("#btn-staff")
    _check_on_screen(page, width, height, f"{width}x{height} keypad")
    _check_contrast(page, "keypad")
    for digit in PIN:
        page.tap(f"#staff-keypad .key:text-is('{digit}')")
    page.tap("#staff-keypad .key.ok")
    expect(page.locator("#staff-panel")).to_be_visible()
    expect(page.locator("#staff-bundles .bundle")).to_have_count(2)
    page.wait_for_function("document.querySelector('#staff-preview').naturalWidth > 0")
    wait_for_a_new_frame(page, "#staff-preview")  # live: a second, different frame arrives
    _check_on_screen(page, width, height, f"{width}x{height} staff panel")
    _check_contrast(page, "staff panel")
    assert page.locator("#staff-rollback").is_visible()
    assert page.locator("input[type=file]").count() == 0  # no file picker on a touch kiosk
    texts = page.locator("#staff-bundles .bundle").all_text_contents()
    assert any("serving now" in t for t in texts) and any("USB stick" in t and "spring-tshirts" in t for t in texts)
    _shot(page, tmp_path, f"kiosk-staff-{width}x{height}.png")
    page.tap("#staff-close")
    assert not errors, errors
