"""The kiosk's HTTP face: the page, the JSON API under /api/, the camera preview, /healthz and /metrics.

The routes live in `edge.kiosk.routes`, one module per group, each registered through `Routes`. Every parameter
is validated there before `KioskService` sees it; a bad one is answered with a 4xx and
``{"error": "<what to fix>"}``: 400 for a malformed body, parameter or design ID, 401 for staff routes without
a session, 404 for an unknown path, 409 for a design ID from another model, 413 for a body over
`max_body_bytes`, 503 while overloaded. HEAD is answered for every GET route.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.kiosk.api_error import ApiError
from edge.kiosk.json_routes import ASGIApp, JsonRoutes, validation_message
from edge.kiosk.middleware import AccessLogMiddleware, BodyLimitMiddleware, HeadAsGet
from edge.kiosk.routes import GROUPS, Routes
from edge.kiosk.service import KioskService


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(service: KioskService, *, manage_service: bool = True) -> ASGIApp:
    """Build the kiosk's app around a service: FastAPI, with the hot POST routes in front of it.

    Args:
        service: the kiosk engine (bundle already verified).
        manage_service: start the service when the app starts and stop it when the app stops.

    Returns:
        The ASGI app (serve it with uvicorn; see `edge.kiosk.server`).
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if manage_service:
            await asyncio.to_thread(service.start)
        for start in routes.on_start:  # e.g. the staff desk: capture store and model watcher
            await asyncio.to_thread(start)
        try:
            yield
        finally:
            for stop in reversed(routes.on_stop):
                await asyncio.to_thread(stop)
            if manage_service:
                await asyncio.to_thread(service.stop)

    app = FastAPI(title="Atelier kiosk", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.service = service
    _add_error_handlers(app)
    routes = Routes(app, service)
    for register in GROUPS:
        register(routes)
    # Outermost first: the access log sees the body limit's 413s; the lean routes sit in front of FastAPI
    # (and answer HEAD with 405: they are POST only).
    outer: ASGIApp = JsonRoutes(HeadAsGet(app), routes.lean)
    outer = BodyLimitMiddleware(outer, max_bytes=service.config.max_body_bytes, large_paths=routes.large_bodies)
    return AccessLogMiddleware(outer, service=service)


def _add_error_handlers(app: FastAPI) -> None:
    """Every refusal as ``{"error": ...}``: ApiError, a failed validation, Starlette's own (404, 405)."""

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
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)
