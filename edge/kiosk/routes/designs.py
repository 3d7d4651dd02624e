"""The design API: model info and classes, new designs, neighbours, mixes, a design's picture and the attract walk.

`/api/generate`, `/api/neighbours` and `/api/mix` are the hot POSTs (every tap on the page): they take the lean
path (`Routes.post_json`). Each answers with the designs' JSON once their pictures are in the PNG cache, so the
page's <img> requests that follow are cache hits.
"""

from __future__ import annotations

import re

from fastapi import Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from edge.kiosk import latents
from edge.kiosk.api_error import ApiError
from edge.kiosk.routes.table import Routes
from edge.kiosk.service import MAX_SCALE, MAX_WALK_FRAMES

MAX_CLASS_QUERY_CHARS = 128  # a class name or number in a query string
_CLASS_NUMBER = re.compile(r"[0-9]{1,4}")  # a class given by number ("²" and 5000-digit strings are names)


def class_query(text: str | None) -> str | int | None:
    """A `class` query parameter as DesignIds.class_id takes it: a number when it is one, else a name."""
    # ASCII digits only: str.isdigit() also accepts "²" and digit strings too long for int(), which raise.
    return int(text) if text is not None and _CLASS_NUMBER.fullmatch(text) else text


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


def register(routes: Routes) -> None:
    """Add the design routes."""
    service, config = routes.service, routes.service.config

    @routes.get("/api/info")
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
            "trained_on": service.ids.trained_on,  # what it designs (an unconditional model's data classes)
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
                # The detail view shows designs at 2x from the bundle's learned upscaler when it has one.
                "sharp_2x": service.upscaler()[0] is not None,
            },
        }

    @routes.get("/api/classes")
    async def classes() -> dict[str, object]:
        bundle = service.bundle
        names = list(bundle.class_names or ())
        return {"conditional": bundle.class_names is not None,
                "classes": [{"id": i, "name": name} for i, name in enumerate(names)]}

    def count(value: int | None, default: int, what: str = "n") -> int:
        n = default if value is None else value
        if n > config.max_designs:
            raise ApiError(400, f"{what} must be at most {config.max_designs}, got {n}")
        return n

    async def designs_response(designs: list[latents.DesignId], route: str, **extra: object) -> dict[str, object]:
        ids = service.ids
        ids.check_depth(designs)
        await service.render(designs, route)  # generate now (one request); the page's <img> hits the cache
        return {**extra, "designs": [ids.design_json(d) for d in designs]}

    async def generate(body: GenerateBody) -> dict[str, object]:
        ids = service.ids
        n = count(body.n, config.grid_size)
        seed, designs = ids.sample_ids(n, body.seed, ids.class_id(body.class_))
        return await designs_response(designs, "generate", seed=seed)

    async def neighbours(body: NeighboursBody) -> dict[str, object]:
        ids = service.ids
        parent = ids.parse_id(body.id)
        n = count(body.n, config.grid_size)
        radius = config.neighbour_radius if body.radius is None else body.radius
        designs = ids.neighbour_ids(parent, n, radius, body.start, ids.class_id(body.class_))
        return await designs_response(designs, "neighbours", parent=body.id)

    async def mix(body: MixBody) -> dict[str, object]:
        ids = service.ids
        a, b = ids.parse_id(body.a), ids.parse_id(body.b)
        steps = config.mix_steps if body.steps is None else body.steps
        designs = ids.mix_ids(a, b, steps, ids.class_id(body.class_))
        return await designs_response(designs, "mix", a=body.a, b=body.b)

    routes.post_json("/api/generate", GenerateBody, generate)
    routes.post_json("/api/neighbours", NeighboursBody, neighbours)
    routes.post_json("/api/mix", MixBody, mix)

    @routes.get("/api/design/{design_id}.png")
    async def design_png(design_id: str, scale: int = Query(default=1, ge=1, le=MAX_SCALE)) -> Response:
        design = service.ids.parse_id(design_id)
        data = await service.design_png(design, scale)
        headers = {"Cache-Control": "public, max-age=31536000, immutable"}  # an ID always names one picture
        if scale > 1:
            headers["Content-Disposition"] = f'attachment; filename="design-{design_id}.png"'
        return Response(data, media_type="image/png", headers=headers)

    @routes.get("/api/design/{design_id}")
    async def design_info(design_id: str) -> dict[str, object]:
        ids = service.ids
        return ids.design_json(ids.parse_id(design_id))

    @routes.get("/api/walk.png")
    async def walk(
        seed: int = Query(ge=0, le=latents.MAX_SEED),
        start: int = Query(default=0, ge=0, le=1_000_000_000),
        count: int = Query(default=8, ge=1, le=MAX_WALK_FRAMES),
        class_: str | None = Query(default=None, alias="class", max_length=MAX_CLASS_QUERY_CHARS),
    ) -> Response:
        data, ids = await service.walk_strip(seed, start, count, service.ids.class_id(class_query(class_)))
        return Response(data, media_type="image/png",
                        headers={"Cache-Control": "no-store", "X-Frame-Count": str(len(ids)),
                                 "X-First-Design": ids[0]})
