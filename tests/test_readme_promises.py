"""Promises the docs make that no other test held: 503 on a full queue and 507 on a full store over HTTP, hot-swap
rejection of a flat model and of disagreeing batch models, the 64 MB upload cap, colour-aware dedupe, checkpoint
retention and --keep-epochs, and a kiosk killed mid-upload (a damaged .hot-swap.json: test_hot_swap.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from test_hot_swap import PIN_HASH, _health, serve, unlock, wait_for

from edge.bundle import load_bundle, write_manifest
from edge.capture.pipeline import CapturePipeline, CaptureRejected, CaptureSettings
from edge.capture.scenes import garment_scene
from edge.capture.store import CaptureStore
from edge.kiosk.hot_swap import MAX_UPLOAD_BYTES, STATE_FILE, ModelRejected, verify_bundle
from edge.kiosk.routes.staff import UPLOAD_PATH
from edge.kiosk.worker import WorkerBusyError

REPO = Path(__file__).resolve().parents[1]


# The kiosk under load and out of space ---------------------------------------------------------------------


def test_a_full_generation_queue_answers_503_over_http(tiny_bundle: Path, tmp_path: Path) -> None:
    srv = serve(tiny_bundle, tmp_path / "models", queue_limit=1, num_threads=1)
    try:
        worker = srv.service.worker
        busy = worker.submit(worker.sample_latents(3000, 0))
        deadline = time.monotonic() + 30
        while worker.status()["busy_s"] is None:
            assert time.monotonic() < deadline and not busy.done()
            time.sleep(0.001)
        waiting = worker.submit(worker.sample_latents(8, 1))  # the one job the queue holds
        with pytest.raises(WorkerBusyError):
            worker.submit(worker.sample_latents(8, 2))
        with httpx.Client(base_url=srv.url, timeout=60.0) as client:
            response = client.post("/api/generate", json={"n": 4})
            assert response.status_code == 503
            assert response.json()["error"] == "the kiosk is busy; try again in a moment"
            busy.result(timeout=120), waiting.result(timeout=120)
            assert client.post("/api/generate", json={"n": 4}).status_code == 200  # and it recovers
    finally:
        srv.stop()


def test_a_full_capture_store_answers_507_over_http_and_writes_nothing(tiny_conditional_bundle: Path,
                                                                       tmp_path: Path, kiosk_server) -> None:
    from test_capture_kiosk import PIN as STAFF_PIN
    from test_capture_kiosk import PIN_HASH as STAFF_PIN_HASH
    from test_capture_kiosk import StillCamera, scene

    from edge.capture.store import FrameQuality
    from edge.kernels import preprocess_frame
    from edge.kiosk.camera import CameraFeed

    store_dir = tmp_path / "captures"
    with CaptureStore(store_dir, min_free_bytes=0) as store:  # 1 MB of earlier captures fills a 1 MB store
        store.add_jpeg(os.urandom(1024 * 1024), class_name="dress", width=960, height=540, source="cli",
                       quality=FrameQuality(200.0, 120.0, 0.0, 0.0, 0x1234))
    before = sorted(p.name for p in (store_dir / "images").iterdir())
    holder = {"frame": scene(0)}
    bundle = load_bundle(tiny_conditional_bundle)
    feed = CameraFeed(lambda: StillCamera(holder), lambda bgr: preprocess_frame(bgr, bundle.size_px),
                      uri=StillCamera.uri)
    srv = kiosk_server(tiny_conditional_bundle, camera=feed, staff_pin_hash=STAFF_PIN_HASH, capture_store=store_dir,
                       capture_min_free_mb=0, capture_max_mb=1, models_dir=tmp_path / "none")
    with httpx.Client(base_url=srv.url, timeout=60.0) as client:
        wait_for(lambda: client.get("/healthz").json()["camera"]["state"] == "live", what="the camera")
        token = client.post("/api/staff/unlock", json={"pin": STAFF_PIN}).json()["token"]
        response = client.post("/api/staff/capture", json={"class": "dress"}, headers={"X-Staff-Token": token})
        assert response.status_code == 507, response.text
        assert "out of space" in response.json()["error"] and "Nothing was written" in response.json()["error"]
    assert sorted(p.name for p in (store_dir / "images").iterdir()) == before
    assert not list((store_dir / ".tmp").iterdir())


# Capture dedupe sees colour --------------------------------------------------------------------------------


def _same_luma(luma: np.ndarray, rgb: tuple[int, int, int]) -> np.ndarray:
    """A BGR frame of one hue whose BT.601 luma is `luma` at every pixel (what dHash sees is unchanged)."""
    r, g, b = rgb
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return np.clip(np.round(luma[..., None] * np.array([b, g, r]) / y), 0, 255).astype(np.uint8)


def test_a_red_and_a_blue_shirt_with_the_same_dhash_are_not_duplicates(tmp_path: Path) -> None:
    base = garment_scene("t-shirt", np.random.default_rng(3))
    gray = cv2.cvtColor(base, cv2.COLOR_BGR2GRAY).astype(np.float64)
    luma = 40 + 80 * (gray - gray.min()) / (gray.max() - gray.min())
    red, blue = _same_luma(luma, (200, 50, 50)), _same_luma(luma, (30, 120, 135))
    with CaptureStore(tmp_path / "store", min_free_bytes=0) as store:
        pipeline = CapturePipeline(store, CaptureSettings(min_sharpness=50))
        a, _ = pipeline.assess(red)
        b, _ = pipeline.assess(blue)
        assert a.dhash == b.dhash  # held alike: the luma hash cannot tell them apart
        assert a.colour != b.colour
        pipeline.capture(red, "t-shirt")
        pipeline.capture(blue, "t-shirt")  # another shirt, not a repeat
        with pytest.raises(CaptureRejected) as refused:
            pipeline.capture(red, "t-shirt")  # the red one again is
        assert refused.value.reason == "duplicate"
        assert len(store) == 2


# Hot swap refuses what would serve badly -------------------------------------------------------------------


def _changed_bundle(tiny_run: Path, tmp_path: Path, name: str, change, batches: tuple[int, ...]) -> Path:
    """The tiny run exported with its generator's last conv weights changed by `change(kernel, bias)`."""
    from fixtures_bundles import export_int8

    from trainer import run_folder

    run = Path(shutil.copytree(tiny_run, tmp_path / f"{name}-run"))
    generator = run_folder.load_generator(run)
    last = generator.get_layer("to_rgb")  # the last conv, in front of tanh
    kernel, bias = last.get_weights()
    last.set_weights(change(kernel, bias))
    run_folder.save_generator_atomic(generator, run / "generator.keras")
    return export_int8(run, tmp_path / name, batches=batches)


def test_hot_swap_rejects_a_model_that_draws_flat_pictures(tiny_run: Path, tmp_path: Path) -> None:
    flat = _changed_bundle(tiny_run, tmp_path, "flat", lambda k, b: [np.zeros_like(k), np.zeros_like(b)], (1,))
    assert load_bundle(flat).manifest["parity"]["passed"]  # the export itself is faithful: flat in, flat out
    with pytest.raises(ModelRejected, match="batch-1 model draws flat pictures"):
        verify_bundle(flat)


def test_hot_swap_rejects_batch_models_that_disagree(tiny_run: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    """A bundle whose batch-8 model is another generator's (re-hashed, so only the comparison can tell)."""
    other = _changed_bundle(tiny_run, tmp_path, "negated", lambda k, b: [-k, -b], (8,))
    mixed = Path(shutil.copytree(tiny_bundle, tmp_path / "mixed"))
    shutil.copyfile(other / "generator_b8.tflite", mixed / "generator_b8.tflite")
    manifest = json.loads((mixed / "manifest.json").read_text())
    entry = next(m for m in json.loads((other / "manifest.json").read_text())["models"] if m["batch"] == 8)
    manifest["models"] = [entry if m["batch"] == 8 else m for m in manifest["models"]]
    write_manifest(mixed, manifest)
    assert load_bundle(mixed).batches == (1, 8)
    with pytest.raises(ModelRejected, match="batch models disagree on this machine"):
        verify_bundle(mixed)
    verify_bundle(tiny_bundle)  # the untouched bundle passes the same checks


# Uploads ----------------------------------------------------------------------------------------------------


def test_the_upload_cap_is_64_mb(tiny_bundle: Path, tmp_path: Path) -> None:
    assert MAX_UPLOAD_BYTES == 64 * 1024 * 1024
    models = tmp_path / "models"
    models.mkdir()
    srv = serve(tiny_bundle, models)
    try:
        with httpx.Client(base_url=srv.url, timeout=120.0) as client:
            headers = unlock(client)
            at_cap = client.post(UPLOAD_PATH, content=b"\0" * MAX_UPLOAD_BYTES, headers=headers)
            assert at_cap.status_code != 413  # 64 MB is let in (and refused for what it is: not a bundle)
            assert at_cap.json()["error"].startswith("That file is not a model bundle")
            over = client.post(UPLOAD_PATH, content=b"\0" * (MAX_UPLOAD_BYTES + 1), headers=headers)
            assert over.status_code == 413 and f"over {MAX_UPLOAD_BYTES} bytes" in over.json()["error"]
            assert _health(client)["model_id"] == load_bundle(tiny_bundle).model_id
    finally:
        srv.stop()
    assert not [p for p in models.iterdir() if p.name != STATE_FILE]


# State across restarts -------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_kiosk(config: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "atelier", "kiosk", "--config", str(config), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the kiosk exited"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the kiosk never answered")


def test_a_kiosk_killed_mid_upload_restarts_clean_and_takes_the_next_upload(
        tiny_bundle: Path, tiny_conditional_bundle: Path, tmp_path: Path) -> None:
    from test_hot_swap import _tar_of

    models = tmp_path / "models"
    models.mkdir()
    start = shutil.copytree(tiny_bundle, models / "start")
    config = tmp_path / "kiosk.toml"
    config.write_text(f'bundle = "{start}"\nmodels_dir = "{models}"\nstaff_pin_hash = "{PIN_HASH}"\n'
                      f'capture_store = "{tmp_path / "captures"}"\ncapture_min_free_mb = 0\nmodels_watch_s = 0.2\n')
    upload = _tar_of(tiny_conditional_bundle)
    port = _free_port()
    proc = _start_kiosk(config, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
            token = unlock(client)["X-Staff-Token"]
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(f"POST {UPLOAD_PATH} HTTP/1.1\r\nHost: kiosk\r\nX-Staff-Token: {token}\r\n"
                         f"Content-Type: application/x-tar\r\nContent-Length: {len(upload)}\r\n\r\n".encode())
            conn.sendall(upload[: len(upload) // 2])  # half of it, then the power goes
            time.sleep(0.3)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    # What a kill while unpacking would leave: a staging folder under a dot name, half written.
    staging = models / ".upload-0123456789ab"
    staging.mkdir()
    shutil.copyfile(tiny_conditional_bundle / "manifest.json", staging / "manifest.json")
    (staging / "generator_b1.tflite").write_bytes((tiny_conditional_bundle / "generator_b1.tflite").read_bytes()[:999])
    proc = _start_kiosk(config, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60.0) as client:
            health = _health(client)
            assert health["model_id"] == load_bundle(start).model_id and health["model_error"] is None
            assert sorted(p.name for p in models.iterdir() if not p.name.startswith(".")) == ["start"]
            response = client.post(UPLOAD_PATH, content=upload, headers=unlock(client))
            assert response.status_code == 200, response.text
            assert _health(client)["model_id"] == load_bundle(tiny_conditional_bundle).model_id
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


# Training keeps what it promises ---------------------------------------------------------------------------


def test_checkpoint_retention_and_keep_epochs(garment_dir: Path, tmp_path: Path) -> None:
    from atelier.cli import main

    run = tmp_path / "run"
    assert main(["train", "--data", str(garment_dir), "--out", str(run), "--preset", "tiny", "--epochs", "4",
                 "--steps-per-checkpoint", "1", "--keep-epochs", "1,3", "--seed", "2", "--no-progress"]) == 0
    steps = 4 * (72 // 16)
    kept = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert kept == [f"ckpt-{s:09d}.npz" for s in range(steps - 2, steps + 1)]  # the newest 3, no temp files
    snapshots = sorted(p.name for p in (run / "snapshots").iterdir())
    assert snapshots == ["epoch-0001", "epoch-0003", "epoch-0004"]  # asked for, and the last
    assert all((run / "snapshots" / s / "generator.keras").is_file() for s in snapshots)
