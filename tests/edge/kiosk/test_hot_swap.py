"""Model hot swap on a running kiosk (real uvicorn on loopback, real bundles, real interpreters): a new bundle in
the models folder is verified and swapped in, a corrupt one is rejected while the old model keeps serving, staff
can upload a bundle and roll back."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import tarfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fixtures_bundles import models_and_stick
from fixtures_kiosk import start_kiosk

from edge.bundle import load_bundle
from edge.kiosk import bundle_upload
from edge.kiosk.hot_swap import MAX_UNPACKED_BYTES, MAX_UPLOAD_MEMBERS, ModelManager, ModelRejected, verify_bundle
from edge.kiosk.server import BackgroundServer
from edge.kiosk.staff import hash_pin

PIN = "2468"
PIN_HASH = hash_pin(PIN, iterations=1000)


def damage(bundle_dir: Path, name: str = "generator_b1.tflite") -> None:
    """Flip one byte in the middle of a model file (its size stays the same)."""
    path = bundle_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))


def wait_for(predicate, timeout_s: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _state_active(models: Path) -> str | None:
    try:
        return json.loads((models / ".hot-swap.json").read_text()).get("active")
    except (OSError, ValueError):  # not written yet, or the damaged one still there
        return None


def wait_for_a_scan(client: httpx.Client, models: Path, bundle: Path, name: str = "probe") -> None:
    """Drop a damaged copy of `bundle` into the models folder and wait until the watcher rejects it: proof that
    it scanned (and would have swapped any other candidate in) after this point."""
    probe = shutil.copytree(bundle, models / f".{name}")
    damage(probe)
    probe = probe.rename(models / name)
    wait_for(lambda: (_health(client)["model_error"] or {}).get("bundle") == str(probe), what="a watcher scan")


def serve(bundle: Path, models_dir: Path, **extra: object) -> BackgroundServer:
    return start_kiosk(bundle, models_dir=models_dir, models_watch_s=0.2, staff_pin_hash=PIN_HASH,
                       capture_store=models_dir.parent / "captures", capture_min_free_mb=0, **extra)


def unlock(client: httpx.Client) -> dict[str, str]:
    response = client.post("/api/staff/unlock", json={"pin": PIN})
    assert response.status_code == 200, response.text
    return {"X-Staff-Token": response.json()["token"]}


# Verification ----------------------------------------------------------------------------------------------


def test_verification_passes_a_good_bundle_and_names_what_is_wrong_with_bad_ones(tiny_bundle: Path,
                                                                                 tmp_path: Path) -> None:
    verified = verify_bundle(tiny_bundle)
    assert verified.bundle.model_id == load_bundle(tiny_bundle).model_id
    assert verified.report["floor_db"] == verified.bundle.manifest["parity"]["min_psnr_db"]
    assert all(v >= verified.report["floor_db"] for v in verified.report["batch_psnr_db"].values())

    corrupt = shutil.copytree(tiny_bundle, tmp_path / "corrupt")
    damage(corrupt)
    with pytest.raises(ModelRejected, match="fails its checksum"):
        verify_bundle(corrupt)
    missing = shutil.copytree(tiny_bundle, tmp_path / "missing")
    (missing / "generator_b8.tflite").unlink()
    with pytest.raises(ModelRejected, match=r"missing generator_b8\.tflite"):
        verify_bundle(missing)
    forced = shutil.copytree(tiny_bundle, tmp_path / "forced")
    manifest = json.loads((forced / "manifest.json").read_text())
    manifest["parity"].update(passed=False, forced=True, worst_psnr_db=12.0)
    (forced / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelRejected, match="did not pass parity"):
        verify_bundle(forced)
    del manifest["parity"]
    (forced / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelRejected, match="no parity report"):
        verify_bundle(forced)


# On a running kiosk ----------------------------------------------------------------------------------------


@pytest.fixture()
def kiosk(tiny_bundle: Path, tmp_path: Path) -> Iterator[tuple[BackgroundServer, httpx.Client, Path]]:
    models = tmp_path / "models"
    models.mkdir()
    start = shutil.copytree(tiny_bundle, models / "start")
    srv = serve(start, models)
    with httpx.Client(base_url=srv.url, timeout=60.0) as client:
        yield srv, client, models
    srv.stop()


def _health(client: httpx.Client) -> dict:
    return client.get("/healthz").json()


def test_corrupt_bundle_is_rejected_good_one_swapped_in_and_rollback(kiosk, tiny_bundle: Path,
                                                                      tiny_conditional_bundle: Path) -> None:
    _srv, client, models = kiosk
    old_id = client.get("/api/info").json()["model_id"]
    old_design = client.post("/api/generate", json={"n": 2, "seed": 5}).json()["designs"][0]

    # A corrupt bundle (one flipped byte) appears: rejected, logged in /healthz, the old model keeps serving.
    corrupt = shutil.copytree(tiny_conditional_bundle, models / ".incoming")
    damage(corrupt)
    corrupt = corrupt.rename(models / "broken")
    health = wait_for(lambda: (h := _health(client))["model_error"] and h, what="the rejection")
    assert health["status"] == "ok" and health["model_id"] == old_id
    assert health["model_error"]["bundle"] == str(corrupt) and "fails its checksum" in health["model_error"]["error"]
    assert client.get(old_design["url"]).status_code == 200
    assert client.post("/api/generate", json={"n": 2}).status_code == 200

    # A good bundle appears: verified, swapped in; the error clears; designs of the old model are refused.
    good = shutil.copytree(tiny_conditional_bundle, models / ".incoming2").rename(models / "conditional")
    new_id = load_bundle(good).model_id
    wait_for(lambda: client.get("/api/info").json()["model_id"] == new_id, what="the swap")
    health = _health(client)
    assert health["model_error"] is None and health["model_id"] == new_id
    assert health["models"]["last_swap"]["to"] == str(good.resolve())
    assert client.get("/api/classes").json()["conditional"] is True
    fresh = client.post("/api/generate", json={"n": 3, "class": "dress"})
    assert fresh.status_code == 200 and all(d["class"] == "dress" for d in fresh.json()["designs"])
    stale = client.get(old_design["url"].replace(".png", ".png?scale=2"))
    assert stale.status_code == 409

    # Staff roll back: the previous bundle serves again and the watcher does not swap the newer one back in.
    assert client.post("/api/staff/models/rollback").status_code == 401
    headers = unlock(client)
    response = client.post("/api/staff/models/rollback", headers=headers)
    assert response.status_code == 200 and response.json()["model_id"] == old_id
    assert client.get("/api/info").json()["model_id"] == old_id
    wait_for_a_scan(client, models, tiny_bundle)
    assert client.get("/api/info").json()["model_id"] == old_id
    assert good.is_dir() and corrupt.is_dir()  # bundle folders are kept
    assert client.post("/api/staff/models/rollback", headers=headers).status_code == 409  # nothing further back


def test_requests_during_a_swap_get_the_old_or_the_new_model_never_a_server_error(
        kiosk, tiny_conditional_bundle: Path) -> None:
    srv, client, models = kiosk
    statuses: list[tuple[str, int]] = []
    models_seen: set[str] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def hammer() -> None:
        try:
            with httpx.Client(base_url=srv.url, timeout=60.0) as c:
                while not stop.is_set():
                    response = c.post("/api/generate", json={"n": 4})
                    statuses.append(("generate", response.status_code))
                    for design in response.json().get("designs", [])[:2]:
                        models_seen.add(design["id"].split(".")[0])
                        statuses.append(("picture", c.get(design["url"]).status_code))
        except BaseException as exc:  # a thread's failure must fail the test, not vanish with the thread
            errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: len(statuses) >= 6, what="requests before the swap")
    new_id = load_bundle(tiny_conditional_bundle).model_id
    shutil.copytree(tiny_conditional_bundle, models / ".incoming").rename(models / "next")
    wait_for(lambda: client.get("/api/info").json()["model_id"] == new_id, what="the swap")
    count = len(statuses)
    wait_for(lambda: len(statuses) > count + 6, what="requests after the swap")
    stop.set()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    generated = [status for kind, status in statuses if kind == "generate"]
    assert 200 in generated and set(generated) <= {200, 409}  # 409: asked of the old model as it was swapped out
    assert {status for kind, status in statuses if kind == "picture"} <= {200, 409}
    assert new_id[:12] in models_seen and len(models_seen) == 2  # requests were served on both sides of the swap
    assert _health(client)["status"] == "ok"


def _tar_of(folder: Path, prefix: str = "bundle/", extra: dict[str, bytes] | None = None,
            mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=prefix + path.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _damaged_gz(data: bytes) -> bytes:
    """`data` (a .tar.gz) with one byte flipped where it breaks the deflate stream itself (not only the CRC)."""
    for pos in range(len(data) // 2, len(data) - 8):
        bad = bytearray(data)
        bad[pos] ^= 0x55
        try:
            gzip.decompress(bytes(bad))
        except zlib.error:
            return bytes(bad)
        except (OSError, EOFError):
            continue
    raise AssertionError("no byte flip breaks this deflate stream")


def test_staff_upload_swaps_a_good_bundle_and_refuses_bad_archives(kiosk, tiny_conditional_bundle: Path,
                                                                   tmp_path: Path) -> None:
    _srv, client, models = kiosk
    upload = _tar_of(tiny_conditional_bundle)
    assert len(upload) > 16_384  # bigger than the kiosk's ordinary body limit
    assert client.post("/api/staff/models", content=upload).status_code == 401
    headers = unlock(client)
    hostile = _tar_of(tiny_conditional_bundle, extra={"../../escape.txt": b"x"}, mode="w:gz")
    response = client.post("/api/staff/models", content=hostile, headers=headers)
    assert response.status_code == 422 and "unsafe path" in response.json()["detail"]
    assert response.json()["error"].startswith("That file is not a model bundle")  # one sentence for staff
    assert not (models.parent / "escape.txt").exists()
    assert client.post("/api/staff/models", content=b"not a tar", headers=headers).status_code == 422
    response = client.post("/api/staff/models", content=_damaged_gz(_tar_of(tiny_conditional_bundle, mode="w:gz")),
                           headers=headers)
    assert response.status_code == 422 and "not a readable .tar" in response.json()["detail"]
    broken = shutil.copytree(tiny_conditional_bundle, tmp_path / "broken")
    damage(broken, "generator_b8.tflite")
    response = client.post("/api/staff/models", content=_tar_of(broken), headers=headers)
    assert response.status_code == 422 and "fails its checksum" in response.json()["detail"]
    assert response.json()["error"] == ("That model failed its checks, so it was not installed; the current model "
                                        "keeps serving.")
    assert _health(client)["model_error"] is not None
    response = client.post("/api/staff/models", content=upload, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["model_id"] == load_bundle(tiny_conditional_bundle).model_id
    assert client.get("/api/info").json()["model_id"] == response.json()["model_id"]
    assert (models / response.json()["bundle"] / "manifest.json").is_file()
    assert not [p for p in models.iterdir() if p.name.startswith(".upload-")]
    status = client.get("/api/staff/models", headers=headers).json()
    assert status["model_error"] is None and status["previous"] == str((models / "start").resolve())


class _Zeros(io.RawIOBase):
    """`size` zero bytes, read in chunks (a tar bomb's payload without holding it in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def _bomb(folder: Path, sizes: list[int]) -> bytes:
    """A .tar.gz of a bundle folder plus zero-filled members of the given sizes (they compress ~1000:1)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname="bundle/" + path.name)
        for i, size in enumerate(sizes):
            info = tarfile.TarInfo(f"bundle/padding{i}.bin")
            info.size = size
            tar.addfile(info, _Zeros(size))
    return buf.getvalue()


@pytest.fixture()
def manager(tiny_bundle: Path, tmp_path: Path) -> tuple[ModelManager, Path]:
    """A model manager on a models folder holding its first bundle (no watcher thread: scans run when called)."""
    models = tmp_path / "models"
    models.mkdir()
    start = shutil.copytree(tiny_bundle, models / "start")
    return ModelManager(lambda verified: None, start, models, poll_s=0), models


def test_an_upload_that_unpacks_past_the_cap_is_refused_before_anything_is_written(
        manager, tiny_bundle: Path) -> None:
    mgr, models = manager
    half = MAX_UNPACKED_BYTES // 2 + 1  # each member alone is under the cap, together they are over it
    bomb = _bomb(tiny_bundle, [half, half])
    assert len(bomb) < MAX_UNPACKED_BYTES // 100  # small on the wire
    with pytest.raises(ModelRejected, match="unpacks to over"):
        mgr.receive_upload(bomb)
    many = _tar_of(tiny_bundle, extra={f"bundle/f{i}.bin": b"x" for i in range(MAX_UPLOAD_MEMBERS)})
    with pytest.raises(ModelRejected, match=f"over {MAX_UPLOAD_MEMBERS} members"):
        mgr.receive_upload(many)
    assert sorted(p.name for p in models.iterdir()) == ["start"]  # no staging folder, nothing unpacked


def test_an_upload_is_refused_when_the_disk_cannot_hold_it(manager, tiny_bundle: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    mgr, models = manager
    upload = _tar_of(tiny_bundle)
    # A nearly full disk (a disk we lack): less free than the bundle plus the margin the kiosk keeps.
    monkeypatch.setattr(bundle_upload, "_free_bytes", lambda folder: bundle_upload.UPLOAD_FREE_MARGIN_BYTES + 1024)
    with pytest.raises(ModelRejected, match="not enough free space"):
        mgr.receive_upload(upload)
    assert sorted(p.name for p in models.iterdir()) == ["start"]
    monkeypatch.undo()
    assert (mgr.receive_upload(upload) / "manifest.json").is_file()


def test_damaged_uploads_are_rejections_not_crashes(manager, tiny_bundle: Path) -> None:
    mgr, models = manager
    gz = _tar_of(tiny_bundle, mode="w:gz")
    for bad in (_damaged_gz(gz), gz[: len(gz) // 2], _tar_of(tiny_bundle)[:30_000]):
        with pytest.raises(ModelRejected):
            mgr.receive_upload(bad)
    assert sorted(p.name for p in models.iterdir()) == ["start"]


def test_an_uploaded_folder_is_seen_before_the_watcher_can_find_it(manager, tiny_conditional_bundle: Path) -> None:
    mgr, _models = manager
    folder = mgr.receive_upload(_tar_of(tiny_conditional_bundle))
    # A scan in the gap between the upload's rename and `submit` must not verify and swap it in on its own
    # (it would be swapped in twice, and history would then hold the active folder).
    assert mgr.scan_once() == []
    assert mgr.history == [] and mgr.active == (_models / "start").resolve()
    assert folder.name in mgr.seen


def test_a_restart_restores_the_active_bundle_and_does_not_reapply_a_rolled_back_one(
        tiny_bundle: Path, tiny_conditional_bundle: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    start = shutil.copytree(tiny_bundle, models / "start")
    start_id, new_id = load_bundle(start).model_id, load_bundle(tiny_conditional_bundle).model_id

    def model_id(client: httpx.Client) -> str:
        return client.get("/api/info").json()["model_id"]

    srv = serve(start, models)
    with httpx.Client(base_url=srv.url, timeout=60.0) as client:
        shutil.copytree(tiny_conditional_bundle, models / ".incoming").rename(models / "next")
        wait_for(lambda: model_id(client) == new_id, what="the swap")
    srv.stop()
    # The kiosk restarts with its configured bundle; the watcher brings back the one that was active.
    srv = serve(start, models)
    with httpx.Client(base_url=srv.url, timeout=60.0) as client:
        wait_for(lambda: model_id(client) == new_id, what="the restore")
        assert client.post("/api/staff/models/rollback", headers=unlock(client)).status_code == 200
        assert model_id(client) == start_id
    srv.stop()
    srv = serve(start, models)
    with httpx.Client(base_url=srv.url, timeout=60.0) as client:
        assert client.get("/healthz").json()["model_error"] is None
        wait_for_a_scan(client, models, tiny_bundle)  # the rolled-back bundle stays out
        assert model_id(client) == start_id
    srv.stop()


@pytest.mark.parametrize("damaged", [
    b"\x00\xff\x13garbage",  # not text
    b'{"active": "/x", "seen": {"a": ',  # truncated mid-write
    b"[1, 2, 3]",  # JSON, not an object
    b'{"active": {}, "history": 5, "seen": []}',  # an object with the wrong types
])
def test_a_damaged_state_file_is_set_aside_with_one_clear_log_line(
        damaged: bytes, tiny_bundle: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    models = tmp_path / "models"
    models.mkdir()
    start = shutil.copytree(tiny_bundle, models / "start")
    other = shutil.copytree(tiny_bundle, models / "other")
    (models / ".hot-swap.json").write_bytes(damaged)
    with caplog.at_level("ERROR", logger="edge.kiosk.hot_swap"):
        mgr = ModelManager(lambda verified: None, start, models, poll_s=0)
    lines = [r.getMessage() for r in caplog.records if "event=hot_swap_state_damaged" in r.getMessage()]
    assert len(lines) == 1 and ".hot-swap.json" in lines[0] and "baseline" in lines[0]
    assert (models / ".hot-swap.json.damaged").read_bytes() == damaged  # kept for a look, out of the way
    # As on a first start: what is in the folder now is the baseline, nothing is swapped in by surprise.
    assert set(mgr.seen) == {"start", "other"} and mgr.scan_once() == [] and mgr.active == start.resolve()
    assert other.is_dir()


def test_a_kiosk_with_a_damaged_state_file_keeps_serving_and_watching(
        tiny_bundle: Path, tiny_conditional_bundle: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    start = shutil.copytree(tiny_bundle, models / "start")
    (models / ".hot-swap.json").write_text('{"active": "')
    srv = serve(start, models)
    try:
        with httpx.Client(base_url=srv.url, timeout=60.0) as client:
            assert client.post("/api/generate", json={"n": 2}).status_code == 200
            assert client.get("/healthz").json()["status"] == "ok"
            new_id = load_bundle(tiny_conditional_bundle).model_id
            shutil.copytree(tiny_conditional_bundle, models / ".incoming").rename(models / "next")
            wait_for(lambda: client.get("/api/info").json()["model_id"] == new_id, what="the swap")
        # The watcher writes a good state file again, just after the swap (the new model serves first).
        wait_for(lambda: _state_active(models) == str((models / "next").resolve()), what="the state file")
    finally:
        srv.stop()


def test_bundles_on_the_kiosk_and_on_a_usb_stick_are_offered_as_a_list(
        tiny_bundle: Path, tiny_conditional_bundle: Path, tmp_path: Path) -> None:
    models, start, stick = models_and_stick(tmp_path, tiny_bundle, tiny_conditional_bundle, "autumn")
    (stick / "junk.tar").write_bytes(b"not a tar at all")
    (stick / "holiday.jpg").write_bytes(b"\xff\xd8")  # not a bundle: not offered
    srv = serve(start, models, usb_roots=str(tmp_path / "media"))
    try:
        with httpx.Client(base_url=srv.url, timeout=60.0) as client:
            assert client.get("/api/staff/bundles").status_code == 401
            headers = unlock(client)
            listed = client.get("/api/staff/bundles", headers=headers).json()["bundles"]
            by_file = {b["file"]: b for b in listed}
            assert set(by_file) == {start.name, "autumn", "junk.tar"}
            assert by_file[start.name]["active"] and by_file[start.name]["where"] == "kiosk"
            assert by_file["autumn"]["where"] == "usb" and by_file["autumn"]["kind"] == "folder"
            assert all("/" not in b["id"] for b in listed)  # an opaque handle, never a path
            junk = client.post("/api/staff/bundles/install", json={"id": by_file["junk.tar"]["id"]},
                               headers=headers)
            assert junk.status_code == 422 and junk.json()["error"].startswith("That file is not a model bundle")
            assert "not a readable .tar" in junk.json()["detail"]
            made_up = client.post("/api/staff/bundles/install", json={"id": "0" * 16}, headers=headers)
            assert made_up.status_code == 422 and "USB stick" in made_up.json()["error"]
            assert client.post("/api/staff/bundles/install", json={"id": "../../etc"},
                               headers=headers).status_code == 422
            response = client.post("/api/staff/bundles/install", json={"id": by_file["autumn"]["id"]},
                                   headers=headers)
            assert response.status_code == 200, response.text
            assert client.get("/api/info").json()["model_id"] == load_bundle(tiny_conditional_bundle).model_id
            # Copied onto the kiosk: it keeps serving when the stick is pulled out.
            shutil.rmtree(stick)
            assert (models / response.json()["bundle"] / "manifest.json").is_file()
            assert client.post("/api/generate", json={"n": 1}).status_code == 200
    finally:
        srv.stop()
