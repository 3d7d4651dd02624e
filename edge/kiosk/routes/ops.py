"""Operations: `/healthz` (200 ok / 503 unhealthy, with what is wrong) and `/metrics` (Prometheus text)."""

from __future__ import annotations

from fastapi.responses import JSONResponse, Response

from edge.kiosk.prometheus import CONTENT_TYPE
from edge.kiosk.routes.table import Routes


def register(routes: Routes) -> None:
    """Add the operations routes."""
    service = routes.service

    @routes.get("/healthz")
    async def healthz() -> JSONResponse:
        report = service.health()
        return JSONResponse(report, status_code=200 if report["status"] == "ok" else 503)

    @routes.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.registry.render(), media_type=CONTENT_TYPE)
