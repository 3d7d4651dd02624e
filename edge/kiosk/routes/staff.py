"""Staff mode over HTTP: unlock with the PIN, capture garments, upload and roll back models.

Routes (all under /api/staff; everything but `unlock` needs the `X-Staff-Token` header from a live session and
answers 401 without it, before the body is even read):

    POST /api/staff/unlock            {"pin": "1234"} -> {"token", "session_idle_s"}; 403 wrong PIN, 429 locked out;
                                      {"key": true}: the staff key on a USB stick instead (403 when not found)
    POST /api/staff/lock              end the session
    GET  /api/staff/status            captures per class, store, thresholds, the model's classes, model status
    POST /api/staff/capture           {"class": "dress"} -> the stored capture (201); 422 refused with "reason"
                                      (blurry, too_dark, over_exposed, duplicate, bad_class), 507 store full,
                                      503 no camera frame
    GET  /api/staff/captures/<id>.jpg a stored (blurred) capture, for the staff page's "last capture" thumbnail
    GET  /api/staff/models            hot-swap status
    POST /api/staff/models            body: a bundle folder as .tar -> verified and swapped in (200), 422 rejected
    POST /api/staff/models/rollback   back to the previous bundle
    GET  /api/staff/bundles           bundles in models_dir and on USB sticks: {"bundles": [{"id", "name", ...}]}
    POST /api/staff/bundles/install   {"id": "..."} -> verified and swapped in (200), 422 rejected

Refusals staff read are one plain sentence in "error"; the technical detail goes to the log (and "detail").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.capture.pipeline import CaptureRejected
from edge.capture.store import CAPTURE_ID, MAX_CLASS_CHARS
from edge.kiosk.bundle_upload import MAX_UPLOAD_BYTES
from edge.kiosk.hot_swap import ModelRejected
from edge.kiosk.json_routes import validation_message
from edge.kiosk.routes.table import Routes
from edge.kiosk.staff import TOKEN_HEADER
from edge.kiosk.staff_desk import StaffDesk

log = logging.getLogger(__name__)

PREFIX = "/api/staff"
UPLOAD_PATH = f"{PREFIX}/models"
MAX_FRAME_AGE_S = 2.0  # a capture uses the newest camera frame only if it is at most this old
_REJECT_STATUS = {"store_full": 507, "store_error": 503}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class UnlockBody(_Strict):
    pin: str | None = Field(default=None, max_length=64)
    key: bool = False  # unlock with the staff key (a file on a USB stick) instead of the PIN


class InstallBody(_Strict):
    id: str = Field(max_length=64)


class CaptureBody(_Strict):
    class_: str = Field(alias="class", max_length=MAX_CLASS_CHARS * 4)


def _error(status: int, message: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _rejected(stage: str, detail: str, **extra: object) -> JSONResponse:
    """A refused model as one sentence for staff (422); the detail goes to the log and the "detail" field."""
    log.warning("event=staff_model_refused stage=%s detail=%r", stage, detail)
    if stage == "verify":
        sentence = "That model failed its checks, so it was not installed; the current model keeps serving."
    elif "free space" in detail:
        sentence = "There is not enough free space on the kiosk for that model: remove old bundle folders."
    elif "no longer there" in detail:
        sentence = "That bundle is no longer there: is the USB stick still plugged in?"
    elif " MB" in detail and "over" in detail:
        sentence = f"That file is too large for a model bundle (the most is {MAX_UPLOAD_BYTES // 2**20} MB)."
    else:
        sentence = "That file is not a model bundle: use a .tar of a bundle folder made by `atelier export`."
    return _error(422, sentence, detail=detail, **extra)


async def _body(request: Request, model: type[BaseModel]) -> Any:
    """The request's JSON body validated by `model`, or the 400 answer to send instead."""
    try:
        return model.model_validate_json(await request.body() or b"{}")
    except ValidationError as exc:
        return _error(400, validation_message(exc.errors()))


def register(routes: Routes) -> None:
    """Create the StaffDesk for the service, add its routes, its report to /healthz and its start/stop."""
    service = routes.service
    desk = StaffDesk(service)
    service.health_extras.append(desk.health)
    routes.on_start.append(desk.start)
    routes.on_stop.append(desk.stop)
    routes.allow_body(UPLOAD_PATH, MAX_UPLOAD_BYTES)
    routes.app.state.staff = desk
    app = routes.app

    def staff_only(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        """Answer 401 unless the request carries a live session's token (checked before anything else)."""

        async def guarded(request: Request) -> Response:
            if not desk.guard.check(request.headers.get(TOKEN_HEADER)):
                return _error(401, "staff only: unlock staff mode with the PIN first")
            return await handler(request)

        guarded.__name__ = handler.__name__
        return guarded

    @app.post(f"{PREFIX}/unlock")
    async def unlock(request: Request) -> JSONResponse:
        body = await _body(request, UnlockBody)
        if isinstance(body, JSONResponse):
            return body
        if body.key:
            result = await asyncio.to_thread(desk.unlock_with_key)
        elif body.pin is None:
            return _error(400, "send the PIN: {\"pin\": \"1234\"}, or {\"key\": true} for the staff key")
        else:
            result = await asyncio.to_thread(desk.guard.unlock, body.pin)  # PBKDF2 takes ~0.1 s: off the loop
        if result.token:
            log.info("event=staff_unlocked")
            return JSONResponse({"token": result.token, "session_idle_s": desk.guard.session_idle_s})
        log.warning("event=staff_unlock_refused locked=%s key=%s", result.locked, body.key)
        if not desk.guard.enabled or body.key:
            return _error(403, result.error or "staff mode is off")
        if result.locked:
            return JSONResponse({"error": result.error, "retry_after_s": round(result.retry_after_s, 1)},
                                status_code=429, headers={"Retry-After": str(max(1, round(result.retry_after_s)))})
        return _error(403, result.error or "wrong PIN")

    @app.post(f"{PREFIX}/lock")
    async def lock(request: Request) -> JSONResponse:
        desk.guard.lock(request.headers.get(TOKEN_HEADER))
        return JSONResponse({"locked": True})

    @app.get(f"{PREFIX}/status")
    @staff_only
    async def status(request: Request) -> JSONResponse:
        store = desk.store
        return JSONResponse({
            "captures": {} if store is None else store.class_counts(),
            "trained_on": service.ids.trained_on,
            "store": None if store is None else str(store.root),
            "store_error": desk.store_error,
            "model_classes": list(service.bundle.class_names or ()),
            "settings": {k: getattr(desk.settings, k) for k in ("min_sharpness", "min_mean_luma", "max_mean_luma",
                                                                 "duplicate_max_bits", "face_blur")},
            "camera": service.camera is not None,
            "models": desk.manager.status(),
        })

    @app.post(f"{PREFIX}/capture")
    @staff_only
    async def capture(request: Request) -> Response:
        body = await _body(request, CaptureBody)
        if isinstance(body, JSONResponse):
            return body
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
        counts = desk.pipeline.store.class_counts()
        # New: the model does not design it yet, and this is its first capture (the note is said once).
        new = record.class_name not in service.ids.trained_on and counts.get(record.class_name) == 1
        return JSONResponse({"capture": record.to_json(), "url": f"{PREFIX}/captures/{record.id}.jpg",
                             "new_class": new, "counts": counts}, status_code=201)

    @app.get(PREFIX + "/captures/{capture_id}.jpg")
    async def capture_jpeg(request: Request, capture_id: str) -> Response:
        if not desk.guard.check(request.headers.get(TOKEN_HEADER)):
            return _error(401, "staff only: unlock staff mode with the PIN first")
        if desk.store is None or not CAPTURE_ID.match(capture_id):
            return _error(404, "no such capture")
        record = desk.store.get(capture_id)
        if record is None:
            return _error(404, "no such capture")
        data = await asyncio.to_thread(desk.store.image_path(record).read_bytes)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get(UPLOAD_PATH)
    @staff_only
    async def models(request: Request) -> JSONResponse:
        return JSONResponse(desk.manager.status())

    @app.post(UPLOAD_PATH)
    @staff_only
    async def upload(request: Request) -> JSONResponse:
        data = await request.body()
        try:
            folder = await asyncio.to_thread(desk.manager.receive_upload, data)
        except ModelRejected as exc:
            return _rejected("upload", str(exc))
        ok, detail = await asyncio.to_thread(desk.manager.submit, folder, "upload")
        if not ok:
            return _rejected("verify", detail, bundle=folder.name)
        return JSONResponse({"model_id": detail, "bundle": folder.name})

    @app.get(f"{PREFIX}/bundles")
    @staff_only
    async def bundles(request: Request) -> JSONResponse:
        found = await asyncio.to_thread(desk.bundles)
        return JSONResponse({"bundles": [b.to_json(desk.manager.active) for b in found]})

    @app.post(f"{PREFIX}/bundles/install")
    @staff_only
    async def install(request: Request) -> JSONResponse:
        body = await _body(request, InstallBody)
        if isinstance(body, JSONResponse):
            return body
        try:
            ok, detail, name = await asyncio.to_thread(desk.install, body.id)
        except ModelRejected as exc:
            return _rejected("upload", str(exc))
        if not ok:
            return _rejected("verify", detail, bundle=name)
        return JSONResponse({"model_id": detail, "bundle": name})

    @app.post(f"{PREFIX}/models/rollback")
    @staff_only
    async def rollback(request: Request) -> JSONResponse:
        ok, detail = await asyncio.to_thread(desk.manager.rollback)
        if not ok:
            log.warning("event=staff_rollback_refused detail=%r", detail)
            sentence = ("There is no earlier model to go back to." if "no previous" in detail
                        else "The earlier model failed its checks, so the current one keeps serving.")
            return _error(409, sentence, detail=detail)
        return JSONResponse({"model_id": detail, "active": desk.manager.status()["active"]})
