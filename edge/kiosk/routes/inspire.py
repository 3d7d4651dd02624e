"""Design from my garment: `POST /api/inspire` with a photo (the body) or without one (the newest camera frame).

Answers like /api/generate, ``{"designs": [...]}`` with the reconstruction first and then the variations, plus
``input`` (the picture the encoder saw, the model-input crop as a PNG data URL, for the page to show beside the
designs; nothing is stored), ``source`` ("photo" or "camera") and, for a conditional model, the class it
recognised. The encoder's latent is refined first by a short search for a design more like the picture
(`edge.inspire_refine`, two rounds through the generation worker). Query: `n` (at most the reconstruction and
its variations) and `class`. Refusals, each with
``{"error": "<what to do>"}`` the page shows as it is:

- 400 a damaged or tiny photo, or a bad query; 413 a body over MAX_BODY_BYTES (this path's own limit, through
  `Routes.allow_body`) or a picture over the pixel caps of `edge.photo_decode` (refused from its header);
  415 a body that is not a JPEG, PNG or WebP;
- 404 no body and no camera; 503 no body and a camera that has no fresh frame (stalled, unplugged, starting);
- 422 a frame that is black, over-exposed or blank;
- 503 this model has no usable encoder (missing or damaged `encoder_b1.tflite`: the rest of the kiosk serves on;
  /healthz says `has_encoder: false` with the reason), or too many inspire requests at once.
"""

from __future__ import annotations

import asyncio
import logging
import time

from fastapi import Query, Request
from fastapi.responses import JSONResponse

from edge.inspire import VARIATION_RADII_MILLI, InspireError, inspired_ids
from edge.kiosk.api_error import ApiError
from edge.kiosk.inspire_desk import MAX_CONCURRENT, InspireDesk, crop_png, crop_rgb
from edge.kiosk.routes.designs import MAX_CLASS_QUERY_CHARS, class_query
from edge.kiosk.routes.table import Routes
from edge.photo_decode import MAX_PHOTO_BYTES, PhotoError

log = logging.getLogger(__name__)

INSPIRE_PATH = "/api/inspire"
MAX_BODY_BYTES = MAX_PHOTO_BYTES + 64 * 1024  # the body limit of this one path (the others stay small)
MAX_DESIGNS = 1 + len(VARIATION_RADII_MILLI)  # the reconstruction and its variations


def register(routes: Routes) -> None:
    """Create the InspireDesk for the service, add its route, its body limit and its report to /healthz."""
    service = routes.service
    desk = InspireDesk(service)
    service.health_extras.append(desk.health)
    routes.allow_body(INSPIRE_PATH, MAX_BODY_BYTES)
    routes.app.state.inspire = desk

    @routes.app.post(INSPIRE_PATH)
    async def inspire(request: Request, n: int | None = Query(default=None, ge=1),
                      class_: str | None = Query(default=None, alias="class",
                                                 max_length=MAX_CLASS_QUERY_CHARS)) -> JSONResponse:
        if n is not None and n > MAX_DESIGNS:
            raise ApiError(400, f"n must be at most {MAX_DESIGNS} (the reconstruction and {MAX_DESIGNS - 1} "
                                "variations)")
        encoder, error = await asyncio.to_thread(desk.encoder)
        if encoder is None:
            raise ApiError(503, f"Design from my garment is not available on this model: {error}")
        if desk.busy >= MAX_CONCURRENT:
            raise ApiError(503, "the kiosk is busy designing from other garments: try again in a moment")
        desk.busy += 1
        try:
            body = await request.body()
            try:
                encoding, crop = await asyncio.to_thread(desk.encode, encoder, body)
            except (PhotoError, InspireError) as exc:
                raise ApiError(exc.status, str(exc)) from None
            ids, bundle = service.ids, encoder.bundle
            class_id = ids.class_id(class_query(class_))
            if class_id is None and bundle.class_names is not None:
                class_id = encoding.class_id
            target = crop_rgb(crop, encoder)
            t0 = time.perf_counter()
            refined = await desk.refine(bundle, encoding, target, class_id)
            log.info("event=inspire_refined candidates=%d distance_before=%.0f distance_after=%.0f ms=%.0f",
                     refined.candidates, refined.start_distance, refined.distance, 1000 * (time.perf_counter() - t0))
        finally:
            desk.busy -= 1
        designs = inspired_ids(bundle, refined.encoding, n, class_id)
        ids.check_depth(designs)
        await service.render(designs, "inspire")
        payload: dict[str, object] = {"designs": [ids.design_json(d) for d in designs],
                                      "input": crop_png(target),
                                      "source": "photo" if body else "camera"}
        if bundle.class_names is not None and encoding.class_id is not None:
            payload["recognised"] = {"class": bundle.class_names[encoding.class_id],
                                     "confidence": round(float(encoding.class_confidence or 0.0), 3)}
        return JSONResponse(payload, headers={"Cache-Control": "no-store"})
