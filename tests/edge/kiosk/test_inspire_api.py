"""POST /api/inspire on a real uvicorn server on loopback: photos, the camera's newest frame, and every bad input
(no camera, a stalled camera, black and blown-out frames, non-images, a 50 MP header, an image bomb, a bundle whose
encoder is missing or damaged) answered with a clear 4xx/5xx while the rest of the kiosk keeps serving."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import test_kiosk_api
from test_inspire_edge import _png_header_only, encoded_png, garment_bgr
from test_kiosk_api import _serve, fetch_pixels

from edge.bundle import load_bundle
from edge.designs import DesignGenerator
from edge.kiosk.camera import CameraError, CameraFeed, FrameSource
from edge.kiosk.latents import LatentResolver, parse_design_id
from edge.kiosk.server import BackgroundServer

RED = (200, 40, 40)
client = test_kiosk_api.client  # an httpx client on this module's `server`


@pytest.fixture(scope="module")
def server(tiny_conditional_inspire_bundle: Path) -> Iterator[BackgroundServer]:
    srv = _serve(tiny_conditional_inspire_bundle, camera="synthetic://?fps=30&garment=t-shirt&colour=c82828")
    yield srv
    srv.stop()


def inspire(client: httpx.Client, body: bytes = b"", **params: object) -> httpx.Response:
    return client.post("/api/inspire", content=body, params=params,
                       headers={"Content-Type": "application/octet-stream"})


def test_a_photo_gives_its_reconstruction_then_variations(client: httpx.Client, server: BackgroundServer,
                                                         tiny_conditional_inspire_bundle: Path) -> None:
    response = inspire(client, encoded_png(garment_bgr(RED), ".jpg"))
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["source"] == "photo" and data["input"].startswith("data:image/png;base64,")
    designs = data["designs"]
    assert len(designs) == 6 and ".e" in designs[0]["id"] and designs[1]["id"].split(".")[2].startswith("n0-")
    assert data["recognised"]["class"] in load_bundle(tiny_conditional_inspire_bundle).class_names
    assert designs[0]["class"] == data["recognised"]["class"]
    pixels = [fetch_pixels(client, d) for d in designs]
    # The IDs regenerate bit for bit: from the kiosk after its cache is cleared, and from the bundle alone.
    server.service.cache.clear()
    assert all(np.array_equal(p, fetch_pixels(client, d)) for p, d in zip(pixels, designs, strict=True))
    bundle = load_bundle(tiny_conditional_inspire_bundle)
    gen = DesignGenerator(bundle, batch=1)
    resolver = LatentResolver(gen.sample_latents, bundle.z_distribution)
    design = parse_design_id(designs[0]["id"])
    assert np.array_equal(gen.generate(resolver.vector(design.latent)[None], [design.class_id])[0], pixels[0])
    # More like this, and a mix with a random design, work on inspired designs as on any other.
    more = client.post("/api/neighbours", json={"id": designs[0]["id"], "n": 3})
    assert more.status_code == 200 and len(more.json()["designs"]) == 3
    other = client.post("/api/generate", json={"n": 1, "seed": 5}).json()["designs"][0]["id"]
    mixed = client.post("/api/mix", json={"a": designs[0]["id"], "b": other, "steps": 4})
    assert mixed.status_code == 200 and len(mixed.json()["designs"]) == 5
    assert np.array_equal(fetch_pixels(client, mixed.json()["designs"][0]), pixels[0])  # step 0 is the inspired one
    assert inspire(client, encoded_png(garment_bgr(RED)), n=1, **{"class": "dress"}).json()["designs"][0][
        "class"] == "dress"


def test_no_body_takes_the_newest_camera_frame(client: httpx.Client) -> None:
    deadline = time.monotonic() + 20
    while (response := inspire(client)).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.2)  # the camera's first frame
    assert response.status_code == 200, response.text
    assert response.json()["source"] == "camera" and len(response.json()["designs"]) == 6
    health = client.get("/healthz").json()
    assert health["has_encoder"] is True and health["inspire"] == {"available": True, "reason": None}


@pytest.mark.parametrize("body, status, words", [
    (b"not a picture at all", 415, "not a photo"),
    (_png_header_only(10_000, 5_000), 413, "50 megapixels"),
    (_png_header_only(5_000, 5_000), 413, "megapixels"),
    (b"\xff\xd8\xff\xe0" + b"\x00" * 200, 415, "not a photo"),  # a JPEG marker and then nothing of one
    (encoded_png(garment_bgr(RED), ".jpg")[:700], 400, "damaged"),  # a real JPEG cut short
    (None, 422, "too dark"),
    (None, 422, "over-exposed"),
])
def test_bad_photos_get_a_clear_refusal(client: httpx.Client, body: bytes | None, status: int, words: str) -> None:
    if body is None:
        frame = np.zeros((120, 160, 3), np.uint8) if "dark" in words else np.full((120, 160, 3), 255, np.uint8)
        body = encoded_png(frame)
    response = inspire(client, body)
    assert response.status_code == status and words in response.json()["error"], response.text
    assert client.post("/api/generate", json={"n": 1}).status_code == 200  # nothing else is disturbed


def test_bodies_over_the_cap_and_bad_queries_are_refused(client: httpx.Client) -> None:
    from edge.kiosk.routes.inspire import MAX_BODY_BYTES

    response = inspire(client, b"\xff" * (MAX_BODY_BYTES + 1))
    assert response.status_code == 413
    assert inspire(client, b"x", n=99).status_code == 400
    assert inspire(client, encoded_png(garment_bgr(RED)), **{"class": "spacesuit"}).status_code == 400
    assert client.post("/api/generate", json={"n": 1}).status_code == 200  # the small cap of other routes stands
    assert client.post("/api/generate", content=b"{" + b" " * 4096 + b"}").status_code == 413


class _Frames(FrameSource):
    """A camera that sends `n` frames of `pixel` value (None: a garment) and then, if `stall`, hangs."""

    def __init__(self, pixel: int | None, n: int | None, release: threading.Event) -> None:
        self.uri, self.pixel, self.n, self.sent, self.release = "scripted://", pixel, n, 0, release

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray:
        if self.n is not None and self.sent >= self.n:
            self.release.wait(60.0)
            raise CameraError("released")
        self.sent += 1
        time.sleep(0.02)
        return garment_bgr(RED) if self.pixel is None else np.full((120, 160, 3), self.pixel, np.uint8)

    def close(self) -> None:
        pass


def _feed(pixel: int | None, n: int | None, release: threading.Event) -> CameraFeed:
    from edge.kernels import preprocess_frame

    return CameraFeed(lambda: _Frames(pixel, n, release), lambda bgr: preprocess_frame(bgr, 32), uri="scripted://",
                      stall_timeout_s=120.0)


@pytest.mark.parametrize("pixel, n, status, words", [
    (None, 3, 503, "stopped sending"),  # a stalled camera
    (0, None, 422, "too dark"),  # a covered lens
    (255, None, 422, "over-exposed"),  # a lamp in the lens
])
def test_camera_trouble_is_reported(tiny_inspire_bundle: Path, pixel: int | None, n: int | None, status: int,
                                    words: str) -> None:
    release = threading.Event()
    srv = _serve(tiny_inspire_bundle, camera=_feed(pixel, n, release))
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            deadline = time.monotonic() + 20
            while True:
                response = inspire(c)
                if response.status_code == status and words in response.json()["error"]:
                    break
                assert time.monotonic() < deadline, response.text
                time.sleep(0.3)
            assert c.post("/api/generate", json={"n": 2}).status_code == 200
    finally:
        release.set()
        srv.stop()


def test_no_camera_and_no_body_is_a_404_but_photos_still_work(tiny_inspire_bundle: Path) -> None:
    srv = _serve(tiny_inspire_bundle)
    try:
        response = httpx.post(f"{srv.url}/api/inspire")
        assert response.status_code == 404 and "no camera" in response.json()["error"]
        assert httpx.post(f"{srv.url}/api/inspire", content=encoded_png(garment_bgr(RED))).status_code == 200
    finally:
        srv.stop()


@pytest.mark.parametrize("damage", ["missing", "corrupt", "none"])
def test_a_bundle_without_a_usable_encoder_serves_on_and_says_inspire_is_unavailable(
    tiny_inspire_bundle: Path, tiny_bundle: Path, tmp_path: Path, damage: str
) -> None:
    folder = tmp_path / "bundle"
    shutil.copytree(tiny_bundle if damage == "none" else tiny_inspire_bundle, folder)
    if damage == "missing":
        (folder / "encoder_b1.tflite").unlink()
    elif damage == "corrupt":
        (folder / "encoder_b1.tflite").write_bytes(b"TFL3" * 100)
    srv = _serve(folder, camera="synthetic://?fps=30")
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            health = c.get("/healthz")
            assert health.status_code == 200 and health.json()["has_encoder"] is False
            assert health.json()["inspire"]["reason"]
            response = inspire(c, encoded_png(garment_bgr(RED)))
            assert response.status_code == 503 and "not available" in response.json()["error"]
            assert c.post("/api/generate", json={"n": 4}).status_code == 200
            assert c.get("/api/camera.jpg").status_code in (200, 503)
    finally:
        srv.stop()
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in folder.iterdir()
                                                               if not p.name.startswith("."))
