"""The kiosk's routes, one module per group, all registered the same way: `register(routes: Routes)`.

`Routes` is the one registration path. A group adds GET routes (answered for HEAD too) and slow or rare POSTs
to the FastAPI app (`routes.app`), and its hot JSON POSTs to the lean path with `routes.post_json` (every tap on
the page is one of those: they skip FastAPI's per-request machinery, see `edge.kiosk.json_routes`). A group that
owns something with a lifetime (the staff desk) adds its start/stop to `routes.on_start`/`routes.on_stop`, and a
route that takes a large body says so with `routes.allow_body`.

Groups: `page` (the page and its static files), `designs` (model info and the design API), `camera` (the
preview), `ops` (/healthz, /metrics), `staff` (/api/staff/...), `inspire` (/api/inspire: designs from a garment
photo or the camera frame). A new group is a module with `register` added to `GROUPS`.
"""

from __future__ import annotations

from collections.abc import Callable

from edge.kiosk.routes import camera, designs, inspire, ops, page, staff
from edge.kiosk.routes.table import Routes

GROUPS: tuple[Callable[[Routes], None], ...] = (page.register, designs.register, camera.register, ops.register,
                                               staff.register, inspire.register)

__all__ = ["GROUPS", "Routes"]
