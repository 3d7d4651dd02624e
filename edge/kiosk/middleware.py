"""The ASGI layers around every kiosk route: the access log, the body limit, HEAD answered as GET."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.kiosk.json_routes import ASGIApp, Message, Receive, Scope, Send, send_json
from edge.kiosk.service import KioskService

log = logging.getLogger(__name__)


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
                await send_json(send, 400, {"error": "Content-Length must be a number"})
                return
            if int(length) > max_bytes:
                await send_json(send, 413, {"error": f"request body over {max_bytes} bytes"})
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


class _HeadDone(Exception):
    """The head of a HEAD answer is sent: the rest of the GET's work (a stream) is not wanted."""


class HeadAsGet:
    """Answers HEAD for every GET route: the GET runs, its status and headers are sent, its body is not.

    A streamed body (the camera's MJPEG) is stopped after its first part, so a HEAD never holds a stream open.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        done = False

        async def head_send(message: Message) -> None:
            nonlocal done
            if done:
                raise _HeadDone
            if message["type"] == "http.response.body":
                done = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                if message.get("more_body", False):
                    raise _HeadDone
                return
            await send(message)

        try:
            await self.app({**scope, "method": "GET"}, receive, head_send)
        except _HeadDone:
            pass


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
