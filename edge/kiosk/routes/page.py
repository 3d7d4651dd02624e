"""The page: `/`, a shared design's `/d/<id>` (the same page; it reads the ID from its URL) and `/static/`."""

from __future__ import annotations

from pathlib import Path

from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from edge.kiosk.routes.table import Routes

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"


def register(routes: Routes) -> None:
    """Add the page routes."""

    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    routes.get("/", include_in_schema=False)(page)

    @routes.get("/d/{design_id}", include_in_schema=False)
    async def shared_design(design_id: str) -> FileResponse:
        # The page reads the ID from its URL and asks /api/design/<id> (which reports a bad one).
        return page()

    routes.app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
