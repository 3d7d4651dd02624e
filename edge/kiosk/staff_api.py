"""Staff mode on the kiosk: unlock with the PIN, capture garments, upload and roll back models.

Routes (all under /api/staff; everything but `unlock` needs the `X-Staff-Token` header from a live session and
answers 401 without it):

    POST /api/staff/unlock            {"pin": "1234"} -> {"token", "session_idle_s"}; 403 wrong PIN, 429 locked out
    POST /api/staff/lock              end the session
    GET  /api/staff/status            captures per class, store, thresholds, the model's classes, model status
    POST /api/staff/capture           {"class": "dress"} -> the stored capture (201); 422 refused with "reason"
                                      (blurry, too_dark, over_exposed, duplicate, bad_class), 507 store full,
                                      503 no camera frame
    GET  /api/staff/captures/<id>.jpg a stored (blurred) capture, for the staff page's "last capture" thumbnail
    GET  /api/staff/models            hot-swap status
    POST /api/staff/models            body: a bundle folder as .tar -> verified and swapped in (200), 422 rejected
    POST /api/staff/models/rollback   back to the previous bundle
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from edge.capture.pipeline import CapturePipeline, CaptureRejected, CaptureSettings
from edge.capture.store import CAPTURE_ID, MAX_CLASS_CHARS, CaptureStore
from edge.errors import UserError
from edge.kiosk.hot_swap import MAX_UPLOAD_BYTES, ModelManager, ModelRejected, Verified
from edge.kiosk.staff import TOKEN_HEADER, StaffGuard

log = logging.getLogger(__name__)

UPLOAD_PATH = "/api/staff/models"
MAX_FRAME_AGE_S = 2.0  # a capture uses the newest camera frame only if it is at most this old
_REJECT_STATUS = {"store_full": 507, "store_error": 503}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UnlockBody(_Strict):
    pin: str = Field(max_length=64)


class CaptureBody(_Strict):
    class_: str = Field(alias="class", max_length=MAX_CLASS_CHARS * 4)


def capture_settings(config: Any) -> CaptureSettings:
    """The pipeline thresholds from the kiosk config's `capture_*` keys."""
    return CaptureSettings(
        min_sharpness=config.capture_min_sharpness,
        min_mean_luma=config.capture_min_mean_luma,
        max_mean_luma=config.capture_max_mean_luma,
        duplicate_max_bits=config.capture_duplicate_max_bits,
        face_blur=config.capture_face_blur,
    ).validate()


class StaffDesk:
    """The staff side of one kiosk: PIN guard, capture pipeline (store opened at start), model manager.

    Args:
        service: the running KioskService.
        clock: time source for the PIN rate limit (tests).
    """

    def __init__(self, service: Any, *, clock: Any = time.monotonic) -> None:
        config = service.config
        self.service = service
        self.guard = StaffGuard(config.staff_pin_hash, clock=clock)
        self.settings = capture_settings(config)
        self.store: CaptureStore | None = None
        self.pipeline: CapturePipeline | None = None
        self.store_error: str | None = None
        models_dir = Path(config.models_dir)
        watch = models_dir.is_dir() and config.models_watch_s > 0
        self.manager = ModelManager(self._swap, Path(service.bundle.path),
                                    models_dir if models_dir.is_dir() else None,
                                    poll_s=config.models_watch_s if watch else 0.0,
                                    num_threads=config.num_threads, delegate=config.delegate)

    def _swap(self, verified: Verified) -> None:
        self.service.swap_bundle(verified.bundle)

    def start(self) -> None:
        """Open the capture store (staff mode only) and start the model watcher."""
        config = self.service.config
        if self.guard.enabled:
            try:
                max_bytes = config.capture_max_mb * 1024 * 1024 if config.capture_max_mb > 0 else None
                self.store = CaptureStore(config.capture_store, max_bytes=max_bytes,
                                          min_free_bytes=config.capture_min_free_mb * 1024 * 1024)
                self.pipeline = CapturePipeline(self.store, self.settings)
                log.info("event=capture_ready store=%s captures=%d face_blur=%s", self.store.root,
                         len(self.store), self.settings.face_blur)
            except UserError as exc:
                self.store_error = str(exc)
                log.error("event=capture_unavailable error=%r", self.store_error)
        self.manager.start()

    def stop(self) -> None:
        """Stop the watcher and close the store."""
        self.manager.stop()
        if self.store is not None:
            self.store.close()

    def health(self) -> dict[str, object]:
        """The /healthz additions: the model swap status and why a bundle was rejected."""
        status = self.manager.status()
        return {
            "model_error": status["model_error"],
            "models": status,
            "capture": {"enabled": self.guard.enabled, "store": None if self.store is None else str(self.store.root),
                        "error": self.store_error},
        }


def _error(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def add_staff_routes(app: FastAPI, service: Any) -> StaffDesk:
    """Create the StaffDesk for `service`, add its routes to `app` and its report to /healthz."""
    desk = StaffDesk(service)
    service.health_extras.append(desk.health)
    router = APIRouter(prefix="/api/staff")

    def session(request: Request) -> str | None:
        token = request.headers.get(TOKEN_HEADER)
        return token if desk.guard.check(token) else None

    def denied() -> JSONResponse:
        return _error(401, "staff only: unlock staff mode with the PIN first")

    @router.post("/unlock")
    async def unlock(body: UnlockBody) -> JSONResponse:
        result = await asyncio.to_thread(desk.guard.unlock, body.pin)  # PBKDF2 takes ~0.1 s: off the loop
        if result.token:
            log.info("event=staff_unlocked")
            return JSONResponse({"token": result.token, "session_idle_s": desk.guard.session_idle_s})
        log.warning("event=staff_unlock_refused locked=%s", result.locked)
        if not desk.guard.enabled:
            return _error(403, result.error or "staff mode is off")
        if result.locked:
            return JSONResponse({"error": result.error, "retry_after_s": round(result.retry_after_s, 1)},
                                status_code=429, headers={"Retry-After": str(max(1, round(result.retry_after_s)))})
        return _error(403, result.error or "wrong PIN")

    @router.post("/lock")
    async def lock(request: Request) -> JSONResponse:
        desk.guard.lock(request.headers.get(TOKEN_HEADER))
        return JSONResponse({"locked": True})

    @router.get("/status")
    async def status(request: Request) -> JSONResponse:
        if session(request) is None:
            return denied()
        store = desk.store
        return JSONResponse({
            "captures": {} if store is None else store.class_counts(),
            "store": None if store is None else str(store.root),
            "store_error": desk.store_error,
            "model_classes": list(service.bundle.class_names or ()),
            "settings": {k: getattr(desk.settings, k) for k in ("min_sharpness", "min_mean_luma", "max_mean_luma",
                                                                 "duplicate_max_bits", "face_blur")},
            "camera": service.camera is not None,
            "models": desk.manager.status(),
        })

    @router.post("/capture")
    async def capture(request: Request, body: CaptureBody) -> JSONResponse:
        if session(request) is None:
            return denied()
        if desk.pipeline is None:
            return _error(503, desk.store_error or "capture is not available on this kiosk")
        if service.camera is None:
            return _error(503, "this kiosk has no camera (start it with --camera URI)")
        frame = service.camera.mailbox.latest()
        if frame is None or time.monotonic() - frame.t > MAX_FRAME_AGE_S:
            return _error(503, "no fresh camera frame: check the camera (see /healthz)")
        try:
            record = await asyncio.to_thread(desk.pipeline.capture, frame.bgr, body.class_)
        except CaptureRejected as exc:
            log.info("event=capture_refused reason=%s", exc.reason)
            return _error(_REJECT_STATUS.get(exc.reason, 422), str(exc), reason=exc.reason, measures=exc.measures)
        known = record.class_name in (service.bundle.class_names or ())
        return JSONResponse({"capture": record.to_json(), "url": f"/api/staff/captures/{record.id}.jpg",
                             "new_class": not known, "counts": desk.pipeline.store.class_counts()},
                            status_code=201)

    @router.get("/captures/{capture_id}.jpg")
    async def capture_jpeg(request: Request, capture_id: str) -> Response:
        if session(request) is None:
            return denied()
        if desk.store is None or not CAPTURE_ID.match(capture_id):
            return _error(404, "no such capture")
        record = desk.store.get(capture_id)
        if record is None:
            return _error(404, "no such capture")
        data = await asyncio.to_thread(desk.store.image_path(record).read_bytes)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @router.get("/models")
    async def models(request: Request) -> JSONResponse:
        if session(request) is None:
            return denied()
        return JSONResponse(desk.manager.status())

    @router.post("/models")
    async def upload(request: Request) -> JSONResponse:
        if session(request) is None:
            return denied()
        data = await request.body()
        try:
            folder = await asyncio.to_thread(desk.manager.receive_upload, data)
        except ModelRejected as exc:
            return _error(422, str(exc))
        ok, detail = await asyncio.to_thread(desk.manager.submit, folder, "upload")
        if not ok:
            return _error(422, f"bundle rejected: {detail}", bundle=folder.name)
        return JSONResponse({"model_id": detail, "bundle": folder.name})

    @router.post("/models/rollback")
    async def rollback(request: Request) -> JSONResponse:
        if session(request) is None:
            return denied()
        ok, detail = await asyncio.to_thread(desk.manager.rollback)
        if not ok:
            return _error(409, detail)
        return JSONResponse({"model_id": detail, "active": desk.manager.status()["active"]})

    app.include_router(router)
    app.state.staff = desk
    return desk


__all__ = ["MAX_UPLOAD_BYTES", "UPLOAD_PATH", "StaffDesk", "add_staff_routes", "capture_settings"]
