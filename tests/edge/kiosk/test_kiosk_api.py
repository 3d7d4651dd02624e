"""The kiosk's HTTP API on a real uvicorn server on a loopback port, with real bundles and camera feeds."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fixtures_kiosk import start_kiosk

from edge.bundle import load_bundle
from edge.designs import DesignGenerator
from edge.kiosk.camera import CameraFeed
from edge.kiosk.config import KioskConfig
from edge.kiosk.latents import LatentResolver, parse_design_id
from edge.kiosk.server import BackgroundServer, bind_socket
from edge.kiosk.worker import GenerationWorker, WorkerBusyError, WorkerStoppedError, make_worker

MAX_DESIGNS = 24


@pytest.fixture(scope="session")
def kiosk_bundle(tiny_bundle: Path) -> Path:
    return tiny_bundle


@pytest.fixture(scope="session")
def kiosk_conditional_bundle(tiny_conditional_bundle: Path) -> Path:
    return tiny_conditional_bundle


def _serve(bundle_dir: Path, camera: CameraFeed | str = "") -> BackgroundServer:
    return start_kiosk(bundle_dir, camera=camera, max_designs=MAX_DESIGNS, max_body_bytes=2048)


@pytest.fixture(scope="module")
def server(kiosk_bundle: Path) -> Iterator[BackgroundServer]:
    srv = _serve(kiosk_bundle, camera="synthetic://?fps=30")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as c:
        yield c


@pytest.fixture(scope="module")
def cond_server(kiosk_conditional_bundle: Path) -> Iterator[BackgroundServer]:
    srv = _serve(kiosk_conditional_bundle)
    yield srv
    srv.stop()


def png_pixels(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert bgr is not None, "not a decodable picture"
    return bgr[:, :, ::-1]


def fetch_pixels(client: httpx.Client, design: dict) -> np.ndarray:
    response = client.get(design["url"])
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    return png_pixels(response.content)


def generate(client: httpx.Client, **body: object) -> dict:
    response = client.post("/api/generate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


# Model info ------------------------------------------------------------------------------------------


def test_info_describes_the_served_bundle(client: httpx.Client, kiosk_bundle: Path) -> None:
    bundle = load_bundle(kiosk_bundle)
    info = client.get("/api/info").json()
    assert info["model_id"] == bundle.model_id and len(info["model_id"]) == 12
    assert (info["size_px"], info["z_dim"], info["conditional"]) == (bundle.size_px, bundle.z_dim, False)
    assert info["batches"] == list(bundle.batches)
    assert info["ui"]["max_designs"] == MAX_DESIGNS
    assert client.get("/api/classes").json() == {"conditional": False, "classes": []}


# Designs ---------------------------------------------------------------------------------------------


def test_designs_regenerate_bit_exactly_from_their_ids(
    client: httpx.Client, server: BackgroundServer, kiosk_bundle: Path
) -> None:
    grid = generate(client, n=8, seed=11)
    assert grid["seed"] == 11 and len(grid["designs"]) == 8
    first = [fetch_pixels(client, d) for d in grid["designs"]]  # made as one batch-8 call
    assert all(p.shape == (32, 32, 3) for p in first)
    assert len({p.tobytes() for p in first}) == 8

    server.service.cache.clear()  # now each picture is made again, alone, on the batch-1 model
    again = [fetch_pixels(client, d) for d in grid["designs"]]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))

    # ... and by anyone holding the bundle: a fresh interpreter, the ID's latent, the ID's class.
    bundle = load_bundle(kiosk_bundle)
    gen = DesignGenerator(bundle, batch=1)
    resolver = LatentResolver(gen.sample_latents, bundle.z_distribution)
    for design, pixels in zip(grid["designs"], first, strict=True):
        z = resolver.vector(parse_design_id(design["id"]).latent)[None]
        assert np.array_equal(gen.generate(z)[0], pixels)

    assert [d["id"] for d in generate(client, n=8, seed=11)["designs"]] == [d["id"] for d in grid["designs"]]
    assert generate(client, n=8, seed=12)["designs"][0]["id"] != grid["designs"][0]["id"]


def test_sample_i_of_a_seed_does_not_depend_on_how_many_were_drawn(kiosk_bundle: Path) -> None:
    from test_kiosk_latents import prior_sampler

    bundle = load_bundle(kiosk_bundle)
    gen = DesignGenerator(bundle, batch=1)
    eight = gen.sample_latents(8, 99)
    assert all(np.array_equal(gen.sample_latents(i + 1, 99)[i], eight[i]) for i in range(8))
    # The latent unit tests use the same prior: check it is the bundle's.
    assert np.array_equal(prior_sampler(bundle.z_distribution, bundle.z_dim)(8, 99), eight)


def test_concurrent_requests_each_get_their_own_designs(
    client: httpx.Client, server: BackgroundServer
) -> None:
    def one(seed: int) -> tuple[int, str, np.ndarray]:
        with httpx.Client(base_url=server.url, timeout=30.0) as c:
            (design,) = generate(c, n=1, seed=1000 + seed)["designs"]
            return seed, design["id"], fetch_pixels(c, design)

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(16)))
    server.service.cache.clear()
    for seed, design_id, pixels in results:
        assert design_id.endswith(f".s{1000 + seed}-0"), f"asked for seed {1000 + seed}, got {design_id}"
        alone = fetch_pixels(client, {"url": f"/api/design/{design_id}.png"})
        assert np.array_equal(alone, pixels), f"{design_id} got another request's picture"
    assert len({design_id for _, design_id, _ in results}) == 16


def test_more_like_this_stays_near_its_parent(client: httpx.Client) -> None:
    (parent,) = generate(client, n=1, seed=5)["designs"]
    base = fetch_pixels(client, parent).astype(np.float64)

    def mean_distance(radius: float) -> float:
        body = {"id": parent["id"], "n": 8, "radius": radius}
        response = client.post("/api/neighbours", json=body)
        assert response.status_code == 200, response.text
        designs = response.json()["designs"]
        assert [d["op"] for d in designs] == ["neighbour"] * 8 and designs[0]["parent"] == "s5-0"
        return float(np.mean([np.abs(fetch_pixels(client, d) - base).mean() for d in designs]))

    assert mean_distance(0.05) < mean_distance(2.0)
    page = client.post("/api/neighbours", json={"id": parent["id"], "n": 2, "start": 8}).json()["designs"]
    assert [parse_design_id(d["id"]).latent.j for d in page] == [8, 9]


def test_mix_shows_every_step_from_a_to_b(client: httpx.Client) -> None:
    a, b = generate(client, n=2, seed=21)["designs"]
    response = client.post("/api/mix", json={"a": a["id"], "b": b["id"], "steps": 4})
    assert response.status_code == 200, response.text
    steps = response.json()["designs"]
    assert [(d["step"], d["steps"]) for d in steps] == [(k, 4) for k in range(5)]
    pictures = [fetch_pixels(client, d) for d in steps]
    assert np.array_equal(pictures[0], fetch_pixels(client, a))
    assert np.array_equal(pictures[-1], fetch_pixels(client, b))
    assert len({p.tobytes() for p in pictures}) > 2
    info = client.get(f"/api/design/{steps[2]['id']}").json()
    assert info["op"] == "mix" and info["page"] == f"/d/{steps[2]['id']}"


def test_saved_pictures_are_enlarged(client: httpx.Client) -> None:
    (design,) = generate(client, n=1, seed=3)["designs"]
    small = fetch_pixels(client, design)
    response = client.get(design["url"], params={"scale": 4})
    assert response.status_code == 200
    assert "attachment" in response.headers["content-disposition"]
    big = png_pixels(response.content)
    assert big.shape == (128, 128, 3)
    shrunk = cv2.resize(big, (32, 32), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(shrunk - small.astype(int)).mean() < 8


def test_the_attract_walk_starts_on_its_first_keyframe(
    client: httpx.Client, server: BackgroundServer
) -> None:
    response = client.get("/api/walk.png", params={"seed": 77, "start": 0, "count": 8})
    assert response.status_code == 200 and response.headers["x-frame-count"] == "8"
    strip = png_pixels(response.content)
    assert strip.shape == (32, 32 * 8, 3)
    model_id = server.service.bundle.model_id
    # Walk frames may come from the batch-8 model (the fast path): equal to the design up to int8 rounding.
    keyframe = fetch_pixels(client, {"url": f"/api/design/{model_id}.u.s77-0.png"}).astype(int)
    assert np.abs(strip[:, :32].astype(int) - keyframe).max() <= 4
    frames = [strip[:, 32 * i : 32 * (i + 1)].astype(int) for i in range(8)]
    # A smooth walk: neighbouring frames differ less than the walk's first and last frame.
    steps = [np.abs(frames[i + 1] - frames[i]).mean() for i in range(7)]
    assert max(steps) < np.abs(frames[7] - frames[0]).mean()


# Bad input -------------------------------------------------------------------------------------------

OTHER_MODEL_ID = "ffffffffffff.u.s1-0"


@pytest.mark.parametrize(
    ("path", "body", "status", "complaint"),
    [
        ("/api/generate", {"n": 0}, 400, "n: Input should be greater than or equal to 1"),
        ("/api/generate", {"n": MAX_DESIGNS + 1}, 400, f"n must be at most {MAX_DESIGNS}"),
        ("/api/generate", {"n": "8"}, 400, "n: Input should be a valid integer"),
        ("/api/generate", {"n": True}, 400, "n: Input should be a valid integer"),
        ("/api/generate", {"n": 2.5}, 400, "n: Input should be a valid integer"),
        ("/api/generate", {"seed": -1}, 400, "seed"),
        ("/api/generate", {"seed": 2**32}, 400, "seed"),
        ("/api/generate", {"class": "dress"}, 400, "unconditional"),
        ("/api/generate", {"colour": "red"}, 400, "unknown field 'colour'"),
        ("/api/generate", [1, 2], 400, "JSON object"),
        ("/api/neighbours", {}, 400, "id: Field required"),
        ("/api/neighbours", {"id": "nope"}, 400, "bad design ID"),
        ("/api/neighbours", {"id": OTHER_MODEL_ID}, 409, "this kiosk serves model"),
        ("/api/neighbours", {"id": "{model}.u.s1-0", "radius": 0}, 400, "radius"),
        ("/api/neighbours", {"id": "{model}.u.s1-0", "radius": 2.5}, 400, "radius"),
        ("/api/neighbours", {"id": "{model}.u.s1-0", "radius": 0.0001}, 400, "radius must be in 0.001"),
        ("/api/neighbours", {"id": "{model}.u.s1-0", "n": 99}, 400, "at most"),
        ("/api/neighbours", {"id": "{model}.c0.s1-0"}, 400, "unconditional"),
        ("/api/neighbours", {"id": "{model}.u" + ".n1-10" * 8 + ".s1-0"}, 400, "cannot be taken further"),
        ("/api/mix", {"a": "{model}.u.s1-0"}, 400, "b: Field required"),
        ("/api/mix", {"a": "{model}.u.s1-0", "b": "{model}.u.s1-1", "steps": 0}, 400, "steps"),
        ("/api/mix", {"a": "{model}.u.s1-0", "b": "{model}.u.s1-1", "steps": 33}, 400, "steps"),
        ("/api/mix", {"a": OTHER_MODEL_ID, "b": "{model}.u.s1-1"}, 409, "cannot regenerate"),
    ],
)
def test_bad_bodies_get_a_4xx_with_a_message(
    client: httpx.Client, server: BackgroundServer, path: str, body: object, status: int, complaint: str
) -> None:
    text = json.dumps(body).replace("{model}", server.service.bundle.model_id)
    response = client.post(path, content=text, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    assert complaint in response.json()["error"]


@pytest.mark.parametrize(
    ("path", "status", "complaint"),
    [
        ("/api/design/{model}.u.s1-0.png?scale=0", 400, "scale"),
        ("/api/design/{model}.u.s1-0.png?scale=17", 400, "scale"),
        ("/api/design/{model}.u.s1-0.png?scale=big", 400, "scale"),
        ("/api/design/garbage.png", 400, "bad design ID"),
        ("/api/design/{model}.u.s01-0.png", 400, "bad design ID"),
        ("/api/design/{model}.c1.s1-0.png", 400, "unconditional"),
        (f"/api/design/{OTHER_MODEL_ID}.png", 409, "made by model ffffffffffff"),
        (f"/api/design/{OTHER_MODEL_ID}", 409, "made by model ffffffffffff"),
        ("/api/walk.png", 400, "seed: Field required"),
        ("/api/walk.png?seed=1&count=0", 400, "count"),
        ("/api/walk.png?seed=1&count=17", 400, "count"),
        ("/api/walk.png?seed=1&class=dress", 400, "unconditional"),
        ("/api/walk.png?seed=1&class=%C2%B2", 400, "unconditional"),  # "²" is a digit to str.isdigit()
        ("/api/walk.png?seed=1&class=" + "7" * 5000, 400, "class"),  # past int()'s 4300-digit limit
        ("/api/nothing-here", 404, "not found"),
        ("/static/../../etc/passwd", 404, "not found"),
    ],
)
def test_bad_urls_get_a_4xx_with_a_message(
    client: httpx.Client, server: BackgroundServer, path: str, status: int, complaint: str
) -> None:
    response = client.get(path.replace("{model}", server.service.bundle.model_id))
    assert response.status_code == status, response.text
    assert complaint in response.json()["error"]


def test_malformed_json_and_wrong_methods(client: httpx.Client) -> None:
    as_json = {"content-type": "application/json"}
    response = client.post("/api/generate", content=b'{"n": 8', headers=as_json)
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]
    response = client.post("/api/neighbours", content=b'{"id": "x", "radius": NaN}', headers=as_json)
    assert response.status_code == 400
    response = client.get("/api/generate")
    assert response.status_code == 405 and response.json()["error"]


def test_head_is_answered_for_every_get_route(client: httpx.Client, server: BackgroundServer) -> None:
    design = client.post("/api/generate", json={"n": 1, "seed": 3}).json()["designs"][0]
    for path in ("/", design["page"], "/static/app.js", "/api/info", "/api/classes", design["url"],
                 f"/api/design/{design['id']}", "/healthz", "/metrics", "/api/walk.png?seed=1&count=2",
                 "/api/camera.jpg", "/camera.mjpg"):
        head = client.head(path)
        assert head.status_code == 200 and head.content == b"", (path, head.status_code)
        if path not in ("/camera.mjpg", "/api/camera.jpg", "/healthz", "/metrics"):  # the rest answer the same
            get_headers = client.get(path).headers
            assert head.headers["content-type"] == get_headers["content-type"], path
            assert head.headers["content-length"] == get_headers["content-length"], path
    assert client.head("/camera.mjpg").headers["content-type"].startswith("multipart/x-mixed-replace")
    assert client.head("/no/such/page").status_code == 404
    response = client.head("/api/generate")  # POST only
    assert response.status_code == 405 and response.headers["allow"] == "POST"
    assert client.get("/healthz").status_code == 200  # a HEAD of the endless stream left nothing behind


def test_the_lean_post_routes_read_bodies_as_a_client_would_expect(client: httpx.Client) -> None:
    # generate, neighbours and mix skip FastAPI (edge.kiosk.json_routes): the same answers, other corner cases.
    response = client.post("/api/generate")  # no body: all defaults
    assert response.status_code == 200 and len(response.json()["designs"]) == KioskConfig().grid_size
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    response = client.post("/api/generate", content=b'{"n": 2, "seed": 5}', headers={"content-type": "text/plain"})
    assert response.status_code == 200 and [d["seed"] for d in response.json()["designs"]] == [5, 5]
    for body, complaint in ((b"null", "JSON object"), (b'"n"', "JSON object"), (b"\xff\xfe", "malformed JSON"),
                            (b'{"n": 1e400}', "n: Input should be a valid integer"),
                            (b'{"n": 1, "n": "x"}', "n: Input should be a valid integer")):
        response = client.post("/api/generate", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400 and complaint in response.json()["error"], body
    for method in ("GET", "PUT", "DELETE"):
        response = client.request(method, "/api/mix")
        assert response.status_code == 405 and response.headers["allow"] == "POST"
        assert "POST" in response.json()["error"]
    response = client.post("/api/generate/", json={"n": 1})  # near misses are not these routes
    assert response.status_code == 404 and "not found" in response.json()["error"]


def test_bodies_over_the_limit_are_refused(client: httpx.Client) -> None:
    big = json.dumps({"id": "x" * 4000}).encode()
    response = client.post("/api/neighbours", content=big, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "over 2048 bytes" in response.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming too
        yield b'{"id": "'
        for _ in range(10):
            yield b"y" * 400
        yield b'"}'

    response = client.post("/api/neighbours", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_metrics_count_what_was_served(client: httpx.Client) -> None:
    generate(client, n=4, seed=4242)
    client.get("/api/design/garbage.png")
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.fullmatch(r"# (HELP|TYPE) atelier_\w+ .+", line), line
            continue
        name, value = line.rsplit(" ", 1)
        assert re.fullmatch(r"atelier_\w+(\{(\w+=\"[^\"]*\",?)+\})?", name), line
        samples[name] = float(value)
    assert samples["atelier_generation_seconds_count"] >= 1
    count = samples["atelier_generation_seconds_count"]
    assert samples['atelier_generation_seconds_bucket{le="+Inf"}'] == count
    assert samples['atelier_designs_served_total{route="generate"}'] >= 4
    assert samples['atelier_http_client_errors_total{status="400"}'] >= 1
    assert "atelier_camera_reconnects_total" in samples


# Camera and health -----------------------------------------------------------------------------------


def read_mjpeg_frames(url: str, count: int) -> list[np.ndarray]:
    frames: list[np.ndarray] = []
    with httpx.stream("GET", url, timeout=30.0) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("multipart/x-mixed-replace")
        buffer = b""
        for chunk in response.iter_bytes():
            buffer += chunk
            while (start := buffer.find(b"\xff\xd8")) >= 0 and (end := buffer.find(b"\xff\xd9", start)) >= 0:
                jpeg = np.frombuffer(buffer[start : end + 2], np.uint8)
                frames.append(cv2.imdecode(jpeg, cv2.IMREAD_COLOR))
                buffer = buffer[end + 2 :]
            if len(frames) >= count:
                break
    return frames


def test_the_synthetic_camera_feeds_the_live_preview(server: BackgroundServer) -> None:
    frames = read_mjpeg_frames(f"{server.url}/camera.mjpg", 4)
    assert all(f is not None and f.shape[0] == 240 for f in frames)
    assert not np.array_equal(frames[0], frames[-1])  # the picture moves
    snapshot = httpx.get(f"{server.url}/api/camera.jpg")
    assert snapshot.status_code == 200 and png_pixels(snapshot.content).shape[0] == 240
    assert png_pixels(snapshot.content).shape[1] > 320  # the staff view: the frame and what the model sees
    live = read_mjpeg_frames(f"{server.url}/camera.mjpg?view=live", 2)
    assert all(f is not None and f.shape[:2] == (240, 320) for f in live)  # the shopper's view: the frame alone
    assert png_pixels(httpx.get(f"{server.url}/api/camera.jpg", params={"view": "live"}).content).shape[:2] == \
        (240, 320)
    for path in ("/api/camera.jpg", "/camera.mjpg"):
        bad = httpx.get(f"{server.url}{path}", params={"view": "mirror"})
        assert bad.status_code == 400 and "view must be one of staff, live" in bad.json()["error"]


def test_healthz_reports_model_uptime_and_camera(client: httpx.Client, server: BackgroundServer) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok" and health["model_id"] == server.service.bundle.model_id
    assert health["uptime_s"] > 0
    assert health["camera"]["state"] == "live" and health["camera"]["frames"] > 0
    assert health["worker"]["alive"] is True


def test_a_video_file_feeds_the_preview(kiosk_bundle: Path, tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (64, 48))
    for i in range(6):
        writer.write(np.full((48, 64, 3), (40 * i, 255 - 40 * i, 128), np.uint8))
    writer.release()
    srv = _serve(kiosk_bundle, camera=f"file://{path}")
    try:
        frames = read_mjpeg_frames(f"{srv.url}/camera.mjpg", 3)
        assert all(f.shape[0] == 240 for f in frames)
        assert httpx.get(f"{srv.url}/healthz").json()["camera"]["uri"] == f"file://{path}"
    finally:
        srv.stop()


def test_designs_keep_coming_while_the_camera_fails_stalls_and_returns(kiosk_bundle: Path) -> None:
    from test_kiosk_camera import ScriptedCamera, scripted_feed

    release = threading.Event()
    reconnects: list[int] = []
    script = [("frames", 5, "raise"), ("frames", 3, "stall"), ("open-fails",), ("frames", None, None)]
    feed = scripted_feed(script, release, reconnects)
    srv = _serve(kiosk_bundle, camera=feed)
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            seen_states = set()
            deadline = time.monotonic() + 30
            while ScriptedCamera.connections < 4 or c.get("/healthz").json()["camera"]["state"] != "live":
                assert time.monotonic() < deadline, "camera never came back"
                seen_states.add(c.get("/healthz").json()["camera"]["state"])
                assert len(generate(c, n=2)["designs"]) == 2  # the page keeps working meanwhile
            health = c.get("/healthz")
            assert health.status_code == 200
            camera = health.json()["camera"]
            assert camera["reconnects"] == 2 and camera["failures"] == 3
            assert health.json()["last_error"] is None  # camera trouble is the camera's, not a server error
            assert camera["last_error"] == "open failed: device busy"  # the last of the three failures
            assert seen_states & {"failed", "stalled", "connecting"}
            metrics = c.get("/metrics").text.splitlines()
            assert "atelier_camera_reconnects_total 2" in metrics
            assert "atelier_camera_failures_total 3" in metrics
    finally:
        release.set()
        srv.stop()


def test_no_camera_means_404_on_the_preview(cond_server: BackgroundServer) -> None:
    response = httpx.get(f"{cond_server.url}/camera.mjpg")
    assert response.status_code == 404 and "no camera" in response.json()["error"]
    assert httpx.get(f"{cond_server.url}/healthz").json()["camera"] is None


# Conditional models ----------------------------------------------------------------------------------


def test_classes_of_a_conditional_model(
    cond_server: BackgroundServer, kiosk_conditional_bundle: Path
) -> None:
    names = list(load_bundle(kiosk_conditional_bundle).class_names or ())
    with httpx.Client(base_url=cond_server.url, timeout=30.0) as c:
        assert c.get("/api/classes").json()["classes"] == [{"id": i, "name": n} for i, n in enumerate(names)]
        by_name = generate(c, n=4, seed=8, **{"class": names[1]})["designs"]
        assert {d["class"] for d in by_name} == {names[1]} and all(".c1." in d["id"] for d in by_name)
        by_number = generate(c, n=4, seed=8, **{"class": 1})["designs"]
        assert [d["id"] for d in by_number] == [d["id"] for d in by_name]
        other = generate(c, n=4, seed=8, **{"class": 0})["designs"]
        assert not np.array_equal(fetch_pixels(c, other[0]), fetch_pixels(c, by_name[0]))
        served = fetch_pixels(c, by_name[0])
        cond_server.service.cache.clear()
        assert np.array_equal(fetch_pixels(c, by_name[0]), served)  # regenerated from its ID, not the cache
        mixed = generate(c, n=8, seed=9)["designs"]
        assert all(d["class"] in names for d in mixed)

        known = f"this model knows: {', '.join(names)} (or their numbers 0..{len(names) - 1})"
        for bad, error in (("hat", f"unknown class 'hat'; {known}"), (3, f"unknown class 3; {known}"),
                           (-1, f"unknown class -1; {known}"),
                           (True, "class.str: Input should be a valid string; class.int: Input should be a "
                                  "valid integer")):  # a JSON true is neither a name nor a number
            response = c.post("/api/generate", json={"class": bad})
            assert response.status_code == 400, bad
            assert response.json()["error"] == error
        model = cond_server.service.bundle.model_id
        walk = c.get("/api/walk.png", params={"seed": 3, "count": 2, "class": "1"})
        assert walk.status_code == 200 and ".c1." in walk.headers["X-First-Design"]
        for bad_class in ("²", "0" * 5, "١"):  # superscript two, five digits, Arabic-Indic one: names, not numbers
            response = c.get("/api/walk.png", params={"seed": 3, "count": 2, "class": bad_class})
            assert response.status_code == 400 and "unknown class" in response.json()["error"], bad_class
        for bad_id in (f"{model}.u.s1-0", f"{model}.c3.s1-0"):
            response = c.get(f"/api/design/{bad_id}.png")
            assert response.status_code == 400 and "c0..c2" in response.json()["error"]


# Operations --------------------------------------------------------------------------------------------------


def test_the_listening_socket_is_tcp_so_replies_are_not_held_back() -> None:
    # asyncio turns on TCP_NODELAY only for IPPROTO_TCP sockets; with proto 0 every keep-alive reply waited
    # ~40 ms for a delayed ACK (found by bench/kiosk.py).
    sock = bind_socket("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_a_dead_worker_makes_healthz_503_and_requests_503(kiosk_bundle: Path) -> None:
    srv = _serve(kiosk_bundle)
    try:
        with httpx.Client(base_url=srv.url, timeout=30.0) as c:
            assert c.get("/healthz").status_code == 200
            srv.service.worker.stop()
            health = c.get("/healthz")
            assert health.status_code == 503 and health.json()["status"] == "unhealthy"
            response = c.post("/api/generate", json={"n": 1})
            assert response.status_code == 503 and "not running" in response.json()["error"]
    finally:
        srv.stop()


def _keep_busy(worker: GenerationWorker) -> tuple[np.ndarray, Future, Callable[[], None]]:
    """Submit 3000 designs whose post-processing, in the worker's one thread, waits for `release()`; return once
    it is waiting there. Until the test releases it, the worker is busy and the next requests wait in the queue,
    however fast or loaded the machine is. Needs a one-thread worker (`lanes=1`): with lanes, the lanes that
    finished their share would take the next requests."""
    started, gate = threading.Event(), threading.Event()

    def held(images: np.ndarray) -> np.ndarray:
        started.set()
        gate.wait(120)
        return images

    z = worker.sample_latents(3000, 0)
    busy = worker.submit(z, post=held)
    assert started.wait(60), "the worker never took the busy request"
    return z, busy, gate.set


def test_a_full_queue_is_refused_not_grown(kiosk_bundle: Path) -> None:
    worker = make_worker(load_bundle(kiosk_bundle), queue_limit=1, lanes=1)
    worker.start()
    try:
        z, busy, release = _keep_busy(worker)
        waiting = worker.submit(z[:1])  # the one queue slot
        with pytest.raises(WorkerBusyError):
            worker.submit(z[:1])
        release()
        assert busy.result(timeout=120).shape == (3000, 32, 32, 3)
        assert waiting.result(timeout=120).shape == (1, 32, 32, 3)
    finally:
        worker.stop()


def test_a_request_cancelled_while_queued_does_not_stop_the_worker(kiosk_bundle: Path) -> None:
    worker = make_worker(load_bundle(kiosk_bundle), lanes=1)
    worker.start()
    try:
        z, busy, release = _keep_busy(worker)
        # What wrap_future does when the request's asyncio task is cancelled (the client went away).
        abandoned = worker.submit(z[:2])
        assert abandoned.cancel()
        queued = worker.submit(z[:3])  # batched together with the abandoned one
        release()
        assert queued.result(timeout=120).shape == (3, 32, 32, 3)
        assert busy.result(timeout=120).shape == (3000, 32, 32, 3)
        assert abandoned.cancelled()
        assert worker.submit(z[:1]).result(timeout=120).shape == (1, 32, 32, 3)  # and it keeps serving
    finally:
        worker.stop()


def test_lanes_make_the_same_pictures_as_one_interpreter_on_the_default_model() -> None:
    # The shipped model (real 128 px convolutions, where XNNPACK's thread split matters) through the worker's
    # lanes (single-threaded interpreters side by side) against one 2-thread interpreter, design by design.
    bundle = load_bundle(Path(__file__).resolve().parents[3] / "models" / "default")
    reference = DesignGenerator(bundle, batch=1, num_threads=2)
    z = reference.sample_latents(11, 123)
    # A conditional default: each row its own class, named explicitly (the kiosk always names them).
    classes = list(np.arange(len(z)) % len(bundle.class_names)) if bundle.conditional else None
    expected = np.concatenate([reference.generate(z[i : i + 1], None if classes is None else classes[i : i + 1])
                               for i in range(len(z))])
    for lanes in (2, 3):
        worker = make_worker(bundle, num_threads=2, lanes=lanes)
        worker.start()
        try:
            assert len(worker._lanes) == lanes
            assert np.array_equal(worker.submit(z, classes).result(timeout=120), expected)
            lone = worker.submit(z[:1], None if classes is None else classes[:1]).result(timeout=120)
            assert np.array_equal(lone, expected[:1])  # a lone design
        finally:
            worker.stop()


def test_post_processing_runs_in_the_worker_and_a_failure_fails_only_its_request(kiosk_bundle: Path) -> None:
    worker = make_worker(load_bundle(kiosk_bundle))
    worker.start()
    try:
        z = worker.sample_latents(4, 0)
        threads: list[str] = []

        def shape_and_thread(images: np.ndarray) -> tuple[int, ...]:
            threads.append(threading.current_thread().name)
            return images.shape

        def broken(images: np.ndarray) -> None:
            raise ValueError("cannot encode")

        assert worker.submit(z, post=shape_and_thread).result(timeout=60) == (4, 32, 32, 3)
        assert len(threads) == 1 and threads[0].startswith("generation-")  # a worker thread, once a request
        with pytest.raises(ValueError, match="cannot encode"):
            worker.submit(z[:2], post=broken).result(timeout=60)
        assert worker.submit(z[:1]).result(timeout=60).shape == (1, 32, 32, 3)  # still serving
    finally:
        worker.stop()


def test_stop_finishes_the_queued_requests_and_skips_cancelled_ones(kiosk_bundle: Path) -> None:
    worker = make_worker(load_bundle(kiosk_bundle), lanes=1)
    worker.start()
    z, busy, release = _keep_busy(worker)
    waiting, gone = worker.submit(z[:1]), worker.submit(z[:2])
    assert gone.cancel()
    release()
    worker.stop(timeout_s=120)  # must not raise on the cancelled one
    assert busy.result(timeout=1).shape == (3000, 32, 32, 3)  # the running batch finished
    assert waiting.result(timeout=1).shape == (1, 32, 32, 3)  # so did what was queued (a hot swap relies on it)
    assert gone.cancelled()
    with pytest.raises(WorkerStoppedError):
        worker.submit(z[:1])


def test_requests_left_in_the_queue_when_stop_gives_up_fail_clearly(kiosk_bundle: Path) -> None:
    worker = make_worker(load_bundle(kiosk_bundle), lanes=1)
    worker.start()
    z, busy, release = _keep_busy(worker)
    queued = [worker.submit(z) for _ in range(3)]
    assert queued[1].cancel()
    worker.stop(timeout_s=0.001)  # gives up waiting at once: what is still queued is failed, not left hanging
    release()
    outcomes = []
    for future in (queued[0], queued[2]):
        try:
            outcomes.append(future.result(timeout=120).shape)
        except WorkerStoppedError as exc:
            outcomes.append(str(exc))
    assert "kiosk is shutting down" in outcomes[-1]  # the last one cannot have run before stop() gave up
    assert queued[1].cancelled()
    assert busy.result(timeout=120).shape == (3000, 32, 32, 3)
    for thread in worker._threads:
        thread.join(120)
        assert not thread.is_alive()  # it ended after its part instead of waiting on the queue forever
