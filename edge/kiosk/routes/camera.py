"""The camera preview: one JPEG (`/api/camera.jpg`) or a multipart MJPEG stream (`/camera.mjpg`, at most
MAX_PREVIEW_CLIENTS at once), `?view=staff` (default: the live frame beside what the model sees; the staff panel)
or `?view=live` (the frame alone; "Design from my garment"). The page closes the stream whenever it is not shown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse

from edge.kiosk.api_error import ApiError
from edge.kiosk.camera import CameraFeed
from edge.kiosk.camera_preview import VIEWS, preview_jpeg
from edge.kiosk.routes.table import Routes

MJPEG_BOUNDARY = "frame"
VIEW_QUERY = Query(default="staff", max_length=16,
                   description="staff: the live frame beside what the model sees; live: the frame alone")
MJPEG_MAX_FPS = 15.0
MAX_PREVIEW_CLIENTS = 4


def register(routes: Routes) -> None:
    """Add the camera routes."""
    service = routes.service
    clients = [0]  # MJPEG streams open now

    def camera_or_error() -> CameraFeed:
        if service.camera is None:
            raise ApiError(404, "this kiosk has no camera (start it with --camera URI)")
        return service.camera

    def check_view(view: str) -> str:
        if view not in VIEWS:
            raise ApiError(400, f"view must be one of {', '.join(VIEWS)}")
        return view

    @routes.get("/api/camera.jpg")
    async def camera_snapshot(view: str = VIEW_QUERY) -> Response:
        check_view(view)
        frame = camera_or_error().mailbox.latest()
        if frame is None:
            raise ApiError(503, "no camera frame yet; see /healthz for the camera state")
        data = await asyncio.to_thread(preview_jpeg, frame, 80, view)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @routes.get("/camera.mjpg")
    async def camera_stream(request: Request, view: str = VIEW_QUERY) -> StreamingResponse:
        check_view(view)
        camera = camera_or_error()
        if clients[0] >= MAX_PREVIEW_CLIENTS:
            raise ApiError(503, f"at most {MAX_PREVIEW_CLIENTS} camera previews at once")

        async def parts() -> AsyncIterator[bytes]:
            clients[0] += 1
            seq, min_gap = 0, 1.0 / MJPEG_MAX_FPS
            try:
                while not service.stopping and not await request.is_disconnected():
                    t0 = time.monotonic()
                    frame = await asyncio.to_thread(camera.mailbox.wait_newer, seq, 1.0)
                    if frame is None:
                        continue
                    seq = frame.seq
                    jpeg = await asyncio.to_thread(preview_jpeg, frame, 80, view)
                    yield (f"--{MJPEG_BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                           f"Content-Length: {len(jpeg)}\r\n\r\n").encode() + jpeg + b"\r\n"
                    await asyncio.sleep(max(0.0, min_gap - (time.monotonic() - t0)))
            finally:
                clients[0] -= 1

        return StreamingResponse(parts(), media_type=f"multipart/x-mixed-replace; boundary={MJPEG_BOUNDARY}",
                                 headers={"Cache-Control": "no-store"})
