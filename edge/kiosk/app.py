"""The kiosk's HTTP face: the page, the JSON API under /api/, the camera preview, /healthz and /metrics.

Every parameter is validated here before `KioskService` sees it; a bad one is answered with a 4xx and
``{"error": "<what to fix>"}``: 400 for a malformed body, parameter or design ID, 404 for an unknown path,
409 for a design ID from another model, 413 for a body over `max_body_bytes`, 503 while overloaded.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.kiosk import latents
from edge.kiosk.inspire_api import INSPIRE_PATH, add_inspire_routes
from edge.kiosk.inspire_api import MAX_BODY_BYTES as INSPIRE_MAX_BYTES
from edge.kiosk.json_routes import ASGIApp, JsonRoute, JsonRoutes, Message, Receive, Scope, Send, validation_message
from edge.kiosk.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from edge.kiosk.service import MAX_SCALE, MAX_WALK_FRAMES, ApiError, KioskService
from edge.kiosk.staff_api import MAX_UPLOAD_BYTES, add_staff_routes
from edge.kiosk.staff_api import UPLOAD_PATH as STAFF_UPLOAD_PATH

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MJPEG_BOUNDARY = "frame"
MJPEG_MAX_FPS = 15.0
MAX_PREVIEW_CLIENTS = 4
MAX_CLASS_QUERY_CHARS = 128  # a class name or number in a query string
_CLASS_NUMBER = re.compile(r"[0-9]{1,4}")  # a class given by number ("²" and 5000-digit strings are names)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=False)


class GenerateBody(_Strict):
    """POST /api/generate: `n` new designs from `seed` (random when left out)."""

    n: int | None = Field(default=None, ge=1)
    seed: int | None = Field(default=None, ge=0, le=latents.MAX_SEED)
    class_: str | int | None = Field(default=None, alias="class")  # name or number (conditional models)


class NeighboursBody(_Strict):
    """POST /api/neighbours: `n` designs near design `id` ("more like this")."""

    id: str = Field(max_length=latents.MAX_ID_CHARS)
    n: int | None = Field(default=None, ge=1)
    radius: float | None = Field(default=None, gt=0.0, le=latents.MAX_RADIUS_MILLI / 1000,
                                 allow_inf_nan=False)
    start: int = Field(default=0, ge=0, le=latents.MAX_NEIGHBOUR)
    class_: str | int | None = Field(default=None, alias="class")  # name or number (conditional models)


class MixBody(_Strict):
    """POST /api/mix: the spherical interpolation from design `a` to design `b` in `steps` steps."""

    a: str = Field(max_length=latents.MAX_ID_CHARS)
    b: str = Field(max_length=latents.MAX_ID_CHARS)
    steps: int | None = Field(default=None, ge=1, le=32)
    class_: str | int | None = Field(default=None, alias="class")  # name or number (conditional models)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class BodyLimitMiddleware:
    """Refuses request bodies over `max_bytes` with 413, by header and while streaming (chunked bodies)."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int,
                 large_paths: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.large_paths = large_paths or {}  # exact paths allowed a larger body (staff model upload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.large_paths.get(scope.get("path", ""), self.max_bytes)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _error(400, "Content-Length must be a number")(scope, receive, send)
                return
            if int(length) > max_bytes:
                await _error(413, f"request body over {max_bytes} bytes")(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise StarletteHTTPException(413, f"request body over {max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)


class AccessLogMiddleware:
    """One structured log line per request (method, path, status, ms) and the 4xx counter."""

    def __init__(self, app: Callable[..., Awaitable[None]], service: KioskService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [0]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            code = status[0]
            if 400 <= code < 500:
                self.service.metrics.http_errors.inc(1, str(code))
            if code >= 500:
                self.service.record_error("http", f"{scope['method']} {scope['path']} -> {code}")
            # Refusals at INFO; the steady stream of served pictures at DEBUG (a kiosk logs to flash).
            level = logging.INFO if code >= 400 or code == 0 else logging.DEBUG
            log.log(level, "event=request method=%s path=%s status=%d ms=%.2f", scope["method"], scope["path"],
                    code, (time.perf_counter() - t0) * 1000)


def create_app(service: KioskService, *, manage_service: bool = True) -> ASGIApp:
    """Build the kiosk's app around a service: FastAPI, with the hot POST routes in front of it.

    Args:
        service: the kiosk engine (bundle already verified).
        manage_service: start the service when the app starts and stop it when the app stops.

    Returns:
        The ASGI app (serve it with uvicorn; see `edge.kiosk.server`).
    """
    config = service.config

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_service:
            await asyncio.to_thread(service.start)
        await asyncio.to_thread(staff.start)  # capture store and model watcher (edge.kiosk.staff_api)
        try:
            yield
        finally:
            await asyncio.to_thread(staff.stop)
            if manage_service:
                await asyncio.to_thread(service.stop)

    app = FastAPI(title="Atelier kiosk", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    app.state.preview_clients = 0

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, validation_message(exc.errors()))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404:
            message = "not found: see /api/info for what this kiosk serves"
        return _error(exc.status_code, message)

    def count(value: int | None, default: int, what: str = "n") -> int:
        n = default if value is None else value
        if n > config.max_designs:
            raise ApiError(400, f"{what} must be at most {config.max_designs}, got {n}")
        return n

    # The page -------------------------------------------------------------------------------------------

    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.get("/", include_in_schema=False)(page)

    @app.get("/d/{design_id}", include_in_schema=False)
    async def shared_design(design_id: str) -> FileResponse:
        # The page reads the ID from its URL and asks /api/design/<id> (which reports a bad one).
        return page()

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # Model ----------------------------------------------------------------------------------------------

    @app.get("/api/info")
    async def info() -> dict[str, object]:
        bundle = service.bundle  # the model serving now (it can be hot-swapped)
        return {
            "model_id": bundle.model_id,
            "name": bundle.name,
            "preset": bundle.preset,
            "size_px": bundle.size_px,
            "z_dim": bundle.z_dim,
            "z_distribution": bundle.z_distribution,
            "conditional": bundle.class_names is not None,
            "class_names": list(bundle.class_names or ()),
            "batches": list(bundle.batches),
            "backend": service.worker.backend,
            "camera": bool(service.camera),
            "ui": {
                "grid_size": config.grid_size,
                "neighbour_radius": config.neighbour_radius,
                "mix_steps": config.mix_steps,
                "attract_idle_s": config.attract_idle_s,
                "attract_fps": config.attract_fps,
                "walk_steps": config.walk_steps,
                "walk_frames_per_request": 8,
                "max_designs": config.max_designs,
                "max_scale": min(MAX_SCALE, 2048 // bundle.size_px),
            },
        }

    @app.get("/api/classes")
    async def classes() -> dict[str, object]:
        bundle = service.bundle
        names = list(bundle.class_names or ())
        return {"conditional": bundle.class_names is not None,
                "classes": [{"id": i, "name": name} for i, name in enumerate(names)]}

    # Designs --------------------------------------------------------------------------------------------

    # The hot POST routes take the lean path (edge.kiosk.json_routes), not FastAPI's routing.

    async def designs_response(designs: list[latents.DesignId], route: str, **extra: object) -> dict[str, object]:
        service.check_depth(designs)
        await service.render(designs, route)  # generate now (one request); the page's <img> hits the cache
        return {**extra, "designs": [service.design_json(d) for d in designs]}

    async def generate(body: GenerateBody) -> dict[str, object]:
        n = count(body.n, config.grid_size)
        seed, designs = service.sample_ids(n, body.seed, service.class_id(body.class_))
        return await designs_response(designs, "generate", seed=seed)

    async def neighbours(body: NeighboursBody) -> dict[str, object]:
        parent = service.parse_id(body.id)
        n = count(body.n, config.grid_size)
        radius = config.neighbour_radius if body.radius is None else body.radius
        designs = service.neighbour_ids(parent, n, radius, body.start, service.class_id(body.class_))
        return await designs_response(designs, "neighbours", parent=body.id)

    async def mix(body: MixBody) -> dict[str, object]:
        a, b = service.parse_id(body.a), service.parse_id(body.b)
        steps = config.mix_steps if body.steps is None else body.steps
        designs = service.mix_ids(a, b, steps, service.class_id(body.class_))
        return await designs_response(designs, "mix", a=body.a, b=body.b)

    json_routes = {"/api/generate": JsonRoute(GenerateBody, generate),
                   "/api/neighbours": JsonRoute(NeighboursBody, neighbours),
                   "/api/mix": JsonRoute(MixBody, mix)}

    @app.get("/api/design/{design_id}.png")
    async def design_png(design_id: str, scale: int = Query(default=1, ge=1, le=MAX_SCALE)) -> Response:
        design = service.parse_id(design_id)
        data = await service.design_png(design, scale)
        headers = {"Cache-Control": "public, max-age=31536000, immutable"}  # an ID always names one picture
        if scale > 1:
            headers["Content-Disposition"] = f'attachment; filename="design-{design_id}.png"'
        return Response(data, media_type="image/png", headers=headers)

    @app.get("/api/design/{design_id}")
    async def design_info(design_id: str) -> dict[str, object]:
        return service.design_json(service.parse_id(design_id))

    @app.get("/api/walk.png")
    async def walk(
        seed: int = Query(ge=0, le=latents.MAX_SEED),
        start: int = Query(default=0, ge=0, le=1_000_000_000),
        count: int = Query(default=8, ge=1, le=MAX_WALK_FRAMES),
        class_: str | None = Query(default=None, alias="class", max_length=MAX_CLASS_QUERY_CHARS),
    ) -> Response:
        # ASCII digits only: str.isdigit() also accepts "²" and digit strings too long for int(), which raise.
        cls: str | int | None = (int(class_) if class_ is not None and _CLASS_NUMBER.fullmatch(class_)
                                 else class_)
        data, ids = await service.walk_strip(seed, start, count, service.class_id(cls))
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "no-store", "X-Frame-Count": str(len(ids)),
                                 "X-First-Design": ids[0]})

    # Camera ---------------------------------------------------------------------------------------------

    def camera_or_error() -> Any:
        if service.camera is None:
            raise ApiError(404, "this kiosk has no camera (start it with --camera URI)")
        return service.camera

    @app.get("/api/camera.jpg")
    async def camera_snapshot() -> Response:
        frame = camera_or_error().mailbox.latest()
        if frame is None:
            raise ApiError(503, "no camera frame yet; see /healthz for the camera state")
        data = await asyncio.to_thread(service.preview_jpeg, frame)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/camera.mjpg")
    async def camera_stream(request: Request) -> StreamingResponse:
        camera = camera_or_error()
        if app.state.preview_clients >= MAX_PREVIEW_CLIENTS:
            raise ApiError(503, f"at most {MAX_PREVIEW_CLIENTS} camera previews at once")

        async def parts() -> AsyncIterator[bytes]:
            app.state.preview_clients += 1
            seq, min_gap = 0, 1.0 / MJPEG_MAX_FPS
            try:
                while not service.stopping and not await request.is_disconnected():
                    t0 = time.monotonic()
                    frame = await asyncio.to_thread(camera.mailbox.wait_newer, seq, 1.0)
                    if frame is None:
                        continue
                    seq = frame.seq
                    jpeg = await asyncio.to_thread(service.preview_jpeg, frame)
                    yield (f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                           f"Content-Length: {len(jpeg)}\r\n\r\n").encode() + jpeg + b"\r\n"
                    await asyncio.sleep(max(0.0, min_gap - (time.monotonic() - t0)))
            finally:
                app.state.preview_clients -= 1

        return StreamingResponse(parts(), media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
                                 headers={"Cache-Control": "no-store"})

    # Operations -----------------------------------------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        report = service.health()
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.registry.render(), media_type=METRICS_CONTENT_TYPE)

    staff = add_staff_routes(app, service)  # /api/staff/...: PIN, capture, model upload and rollback
    add_inspire_routes(app, service)  # POST /api/inspire: designs from a garment photo (edge.kiosk.inspire_api)

    # Outermost first: the access log sees the body limit's 413s; the lean routes sit in front of FastAPI.
    outer: ASGIApp = JsonRoutes(app, json_routes)
    outer = BodyLimitMiddleware(outer, max_bytes=config.max_body_bytes,
                                large_paths={STAFF_UPLOAD_PATH: MAX_UPLOAD_BYTES, INSPIRE_PATH: INSPIRE_MAX_BYTES})
    return AccessLogMiddleware(outer, service=service)

