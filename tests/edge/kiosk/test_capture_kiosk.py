"""Capture mode on a running kiosk (real uvicorn, real camera feed thread, real store): the staff PIN (hashed,
rate-limited), capture endpoints closed without a session, and captures refused or stored with their reasons."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fixtures_kiosk import start_kiosk

from edge.bundle import load_bundle
from edge.capture.scenes import garment_scene, paste
from edge.capture.store import CaptureStore
from edge.errors import UserError
from edge.kernels import preprocess_frame
from edge.kiosk.camera import CameraFeed, FrameSource
from edge.kiosk.config import load_config
from edge.kiosk.staff import StaffGuard, hash_pin, verify_pin

PIN = "135790"
PIN_HASH = hash_pin(PIN, iterations=1000)


class StillCamera(FrameSource):
    """A camera we lack, replaced by frames the test puts in front of it (read through the real CameraFeed)."""

    uri = "test://still"

    def __init__(self, holder: dict[str, np.ndarray]) -> None:
        self.holder = holder

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray:
        time.sleep(1 / 30)
        return self.holder["frame"].copy()

    def close(self) -> None:
        pass


def scene(seed: int, kind: str = "dress") -> np.ndarray:
    return garment_scene(kind, np.random.default_rng(seed), width=960, height=540)


@pytest.fixture()
def staff_kiosk(tiny_conditional_bundle: Path, tmp_path: Path
                ) -> Iterator[tuple[httpx.Client, dict[str, np.ndarray], Path]]:
    holder = {"frame": scene(0)}
    bundle = load_bundle(tiny_conditional_bundle)
    feed = CameraFeed(lambda: StillCamera(holder), lambda bgr: preprocess_frame(bgr, bundle.size_px),
                      uri=StillCamera.uri)
    srv = start_kiosk(tiny_conditional_bundle, camera=feed, staff_pin_hash=PIN_HASH,
                      capture_store=tmp_path / "captures", capture_min_free_mb=0, models_dir=tmp_path / "none")
    with httpx.Client(base_url=srv.url, timeout=60.0) as client:
        yield client, holder, tmp_path / "captures"
    srv.stop()


def show(client: httpx.Client, holder: dict[str, np.ndarray], frame: np.ndarray) -> None:
    """Put a frame in front of the camera and wait until the feed has delivered it."""
    holder["frame"] = frame
    time.sleep(0.2)
    assert client.get("/healthz").json()["camera"]["state"] == "live"


def test_pin_is_stored_hashed_and_wrong_pins_are_rate_limited() -> None:
    assert PIN not in PIN_HASH and verify_pin(PIN, PIN_HASH) and not verify_pin("135791", PIN_HASH)
    now = [100.0]
    guard = StaffGuard(PIN_HASH, max_failures=3, lockout_s=30.0, clock=lambda: now[0])
    assert [guard.unlock("0000").token for _ in range(2)] == [None, None]
    locked = guard.unlock("0000")
    assert locked.locked and locked.retry_after_s == 30.0
    assert guard.unlock(PIN).token is None  # even the right PIN waits out the lockout
    now[0] += 10
    assert guard.unlock("2222").retry_after_s == 20.0  # a miss during a lockout neither counts nor extends it
    now[0] += 21
    assert guard.unlock("1111").retry_after_s == 60.0  # each further miss doubles the lockout
    now[0] += 61
    result = guard.unlock(PIN)
    assert result.token and guard.check(result.token)
    for foreign in ("é" * len(result.token), "tökén", "\udcff", result.token + "é"):  # no TypeError: refused
        assert not guard.check(foreign)
    now[0] += guard.session_idle_s + 1
    assert not guard.check(result.token)  # idle sessions expire
    with pytest.raises(UserError, match="hash-pin"):
        StaffGuard("1234")  # a plain PIN in the config is refused


def test_wrong_pins_are_forgotten_with_time_and_the_lockout_is_capped() -> None:
    now = [0.0]
    guard = StaffGuard(PIN_HASH, max_failures=3, lockout_s=30.0, max_lockout_s=120.0, miss_memory_s=600.0,
                       clock=lambda: now[0])
    first = guard.unlock("0000")
    assert first.error == "Wrong PIN. 2 more tries before a short lockout."
    assert guard.unlock("0000").error == "Wrong PIN. 1 more try before a short lockout."  # grammar
    now[0] += 601  # both misses are forgotten: a shopper's taps do not pile up over the day
    assert guard.unlock("0000").error == "Wrong PIN. 2 more tries before a short lockout."
    guard.unlock("0000")
    locks = [guard.unlock("0000").retry_after_s]  # the third miss in ten minutes: a lockout
    for _ in range(4):  # a shopper who keeps at it: the lockout doubles, up to the cap, never beyond
        now[0] += locks[-1]
        locks.append(guard.unlock("0000").retry_after_s)
    assert locks == [30.0, 60.0, 120.0, 120.0, 120.0]
    assert guard.unlock(PIN).error == "Too many wrong PINs: try again in 2 min, or use the staff key."
    assert guard.unlock_with_key().token  # the staff key gets in, lockout or not
    assert guard.unlock(PIN).token  # and voids the shopper's misses


def test_config_validates_the_staff_and_capture_keys(tmp_path: Path) -> None:
    path = tmp_path / "kiosk.toml"
    path.write_text(f'staff_pin_hash = "{PIN_HASH}"\ncapture_face_blur = false\ncapture_min_sharpness = 25\n')
    cfg = load_config(path)
    assert cfg.staff_pin_hash == PIN_HASH and cfg.capture_face_blur is False and cfg.capture_min_sharpness == 25.0
    for text, complaint in [('staff_pin_hash = "2468"', "hash-pin"), ('capture_face_blur = "no"', "true or false"),
                            ("capture_min_mean_luma = 300", "capture_min_mean_luma"),
                            ("capture_duplicate_max_bits = 99", "capture_duplicate_max_bits")]:
        path.write_text(text + "\n")
        with pytest.raises(UserError, match=complaint):
            load_config(path)


def test_capture_endpoints_are_closed_without_a_session(staff_kiosk) -> None:
    client, _, store = staff_kiosk
    calls = [("post", "/api/staff/capture", {"json": {"class": "dress"}}), ("get", "/api/staff/status", {}),
             ("post", "/api/staff/capture", {}),  # an empty body: still 401 (the session is checked first)
             ("post", "/api/staff/capture", {"content": b"{junk"}),
             ("get", "/api/staff/models", {}), ("post", "/api/staff/models", {"content": b"x"}),
             ("post", "/api/staff/models/rollback", {}),
             ("get", "/api/staff/captures/20260101T000000000-00000000.jpg", {})]
    for token in (None, "made-up-token"):
        headers = {"X-Staff-Token": token} if token else {}
        for method, path, kwargs in calls:
            response = getattr(client, method)(path, headers=headers, **kwargs)
            assert response.status_code == 401, (path, response.text)
            assert "staff only" in response.json()["error"]
    # With a live session, a token header that is not ASCII (latin-1 bytes on the wire) is a 401, not a 500.
    assert client.post("/api/staff/unlock", json={"pin": PIN}).status_code == 200
    for raw in (b"caf\xe9", "tökén".encode()):
        response = client.get("/api/staff/status", headers={"X-Staff-Token": raw})
        assert response.status_code == 401 and "staff only" in response.json()["error"]
    with CaptureStore(store, writable=False) as s:
        assert len(s) == 0


def test_wrong_pins_are_refused_then_locked_out_over_http(staff_kiosk) -> None:
    client, _, _ = staff_kiosk
    codes = [client.post("/api/staff/unlock", json={"pin": f"{i:04d}"}) for i in range(5)]
    assert [r.status_code for r in codes[:4]] == [403] * 4 and "Wrong PIN" in codes[0].json()["error"]
    assert codes[4].status_code == 429 and int(codes[4].headers["Retry-After"]) >= 1
    right = client.post("/api/staff/unlock", json={"pin": PIN})
    assert right.status_code == 429 and "Too many wrong PINs" in right.json()["error"]
    assert client.post("/api/staff/unlock", json={"pin": 1234}).status_code == 400  # not a string
    assert client.post("/api/staff/unlock").status_code == 400  # no PIN, no key
    # This kiosk has no staff key configured: the key button says so, and does not get in.
    key = client.post("/api/staff/unlock", json={"key": True})
    assert key.status_code == 403 and "no staff key" in key.json()["error"]


def test_the_staff_key_on_a_usb_stick_gets_staff_in_during_a_lockout(tiny_bundle: Path, tmp_path: Path) -> None:
    media = tmp_path / "media"
    stick = media / "user" / "STICK"
    stick.mkdir(parents=True)
    key = b"k3y-" + bytes(range(40))
    srv = start_kiosk(tiny_bundle, staff_pin_hash=PIN_HASH, capture_store=tmp_path / "captures",
                      capture_min_free_mb=0, models_dir=tmp_path / "none", usb_roots=f"{media},{tmp_path}/gone",
                      staff_key_sha256=hashlib.sha256(key).hexdigest())
    try:
        with httpx.Client(base_url=srv.url, timeout=60.0) as client:
            for i in range(6):  # a shopper locks the keypad
                client.post("/api/staff/unlock", json={"pin": f"{i:04d}"})
            assert client.post("/api/staff/unlock", json={"pin": PIN}).status_code == 429
            missing = client.post("/api/staff/unlock", json={"key": True})
            assert missing.status_code == 403 and "plug in the USB stick" in missing.json()["error"]
            (stick / "atelier-staff.key").write_bytes(b"not the key")
            assert client.post("/api/staff/unlock", json={"key": True}).status_code == 403  # a wrong file
            (stick / "atelier-staff.key").write_bytes(key)
            response = client.post("/api/staff/unlock", json={"key": True})
            assert response.status_code == 200, response.text
            headers = {"X-Staff-Token": response.json()["token"]}
            assert client.get("/api/staff/status", headers=headers).status_code == 200
            assert client.post("/api/staff/unlock", json={"pin": PIN}).status_code == 200  # the lockout is void
    finally:
        srv.stop()


def test_staff_capture_stores_good_frames_and_refuses_bad_ones_with_reasons(staff_kiosk) -> None:
    client, holder, store = staff_kiosk
    token = client.post("/api/staff/unlock", json={"pin": PIN}).json()["token"]
    headers = {"X-Staff-Token": token}
    status = client.get("/api/staff/status", headers=headers).json()
    assert status["model_classes"] == ["dress", "t-shirt", "trousers"] and status["captures"] == {}

    show(client, holder, scene(1, "dress"))
    first = client.post("/api/staff/capture", json={"class": "dress"}, headers=headers)
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["new_class"] is False and body["counts"] == {"dress": 1}
    jpeg = client.get(body["url"], headers=headers)
    assert jpeg.status_code == 200 and cv2.imdecode(np.frombuffer(jpeg.content, np.uint8), 1) is not None

    refusals = {
        "duplicate": scene(1, "dress"),
        "blurry": cv2.GaussianBlur(scene(2), (0, 0), 4),
        "too_dark": (scene(3) * 0.1).astype(np.uint8),
        "over_exposed": np.clip(scene(4).astype(np.int16) + 170, 0, 255).astype(np.uint8),
    }
    for reason, frame in refusals.items():
        show(client, holder, frame)
        response = client.post("/api/staff/capture", json={"class": "dress"}, headers=headers)
        assert response.status_code == 422 and response.json()["reason"] == reason, response.text
        assert response.json()["error"]  # the message the page shows
    show(client, holder, scene(5, "trousers"))
    bad_class = client.post("/api/staff/capture", json={"class": "../../x"}, headers=headers)
    assert bad_class.status_code == 422 and bad_class.json()["reason"] == "bad_class"
    typed = client.post("/api/staff/capture", json={"class": "skirt"}, headers=headers)  # a class the model lacks
    assert typed.status_code == 201 and typed.json()["new_class"] is True
    show(client, holder, scene(6, "trousers"))
    again = client.post("/api/staff/capture", json={"class": "skirt"}, headers=headers)
    assert again.status_code == 201 and again.json()["new_class"] is False  # said once, at the first one
    client.post("/api/staff/lock", headers=headers)
    assert client.post("/api/staff/capture", json={"class": "dress"}, headers=headers).status_code == 401
    with CaptureStore(store, writable=False) as s:
        assert s.class_counts() == {"dress": 1, "skirt": 2} and s.verify() == []


def test_a_face_in_front_of_the_kiosk_camera_is_blurred_in_the_store(staff_kiosk) -> None:
    from matplotlib import cbook

    client, holder, _store = staff_kiosk
    headers = {"X-Staff-Token": client.post("/api/staff/unlock", json={"pin": PIN}).json()["token"]}
    frame = scene(8, "t-shirt")
    portrait = cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)), cv2.IMREAD_COLOR)
    paste(frame, portrait, 20, 60, 420)
    show(client, holder, frame)
    response = client.post("/api/staff/capture", json={"class": "t-shirt"}, headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["capture"]["faces_blurred"] >= 1  # (a false alarm elsewhere only blurs more)


def test_staff_mode_is_off_without_a_pin_hash(tiny_bundle: Path, tmp_path: Path, kiosk_server) -> None:
    srv = kiosk_server(tiny_bundle, capture_store=tmp_path / "captures", models_dir=tmp_path / "m")
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        response = client.post("/api/staff/unlock", json={"pin": "1234"})
        assert response.status_code == 403 and "staff mode is off" in response.json()["error"]
        assert client.get("/healthz").json()["capture"]["enabled"] is False
    assert not (tmp_path / "captures").exists()  # no store is created when capture is off


def test_concurrent_captures_are_serialised(staff_kiosk) -> None:
    client, holder, _store = staff_kiosk
    headers = {"X-Staff-Token": client.post("/api/staff/unlock", json={"pin": PIN}).json()["token"]}
    show(client, holder, scene(9, "dress"))
    results: list[int] = []

    def press() -> None:
        results.append(client.post("/api/staff/capture", json={"class": "dress"}, headers=headers).status_code)

    threads = [threading.Thread(target=press) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [201, 422, 422, 422]  # one stored, the same frame three times a duplicate


@pytest.mark.browser
def test_staff_page_unlocks_captures_and_shows_the_reason_of_a_refusal(staff_kiosk, browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    client, holder, _ = staff_kiosk
    show(client, holder, scene(21, "dress"))
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{client.base_url}/?idle=600")
    page.click("#btn-staff")

    def type_pin(pin: str) -> None:  # on the on-screen keypad: the kiosk has no keyboard
        for digit in pin:
            page.click(f"#staff-keypad .key:text-is('{digit}')")
        expect(page.locator("#staff-pin-dots")).to_have_text("●" * len(pin))
        page.click("#staff-keypad .key.ok")

    type_pin("0000")
    expect(page.locator("#staff-pin-msg")).to_have_text("Wrong PIN. 4 more tries before a short lockout.")
    expect(page.locator("#staff-panel")).to_be_hidden()
    type_pin(PIN)
    expect(page.locator("#staff-panel")).to_be_visible()
    chips = page.locator("#staff-class-chips .chip")
    expect(chips).to_have_text(["dress", "t-shirt", "trousers"])  # the model's classes, as chips
    expect(chips.nth(0)).to_have_attribute("aria-pressed", "true")
    page.click("#staff-capture")
    expect(page.locator("#staff-result")).to_have_text("Saved a dress.")  # a class the model knows: no note
    expect(page.locator("#staff-counts")).to_contain_text("dress: 1")
    page.wait_for_function("document.querySelector('#staff-last').naturalWidth > 0")
    page.click("#staff-class-chips .chip >> nth=1")
    expect(chips.nth(1)).to_have_attribute("aria-pressed", "true")
    show(client, holder, cv2.GaussianBlur(scene(22), (0, 0), 4))
    page.fill("#staff-class", "evening gown")
    page.click("#staff-capture")
    expect(page.locator("#staff-result")).to_contain_text("blurry")
    page.screenshot(path=str(tmp_path / "staff.png"))
    page.click("#staff-lock")
    expect(page.locator("#staff-pin")).to_be_visible()
    page.close()
    assert not errors, errors
