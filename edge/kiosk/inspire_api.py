"""POST /api/inspire: designs from a garment photo (the body) or from the newest camera frame (no body).

Answers like /api/generate, ``{"designs": [...]}`` with the reconstruction first and then the variations, plus
``input`` (the picture the encoder saw, the model-input crop as a PNG data URL, for the page to show beside the
designs; nothing is stored) and, for a conditional model, the class it recognised. Refusals, each with
``{"error": "<what to do>"}`` the page shows as it is:

- 400 a damaged or tiny photo, or a bad query; 413 a body over MAX_PHOTO_BYTES or a picture over
  MAX_PHOTO_PIXELS (refused from its header); 415 a body that is not a JPEG, PNG or WebP;
- 404 no body and no camera; 503 no body and a camera that has no fresh frame (stalled, unplugged, starting);
- 422 a frame that is black, over-exposed or blank;
- 503 this model has no usable encoder (missing or damaged `encoder_b1.tflite`: the rest of the kiosk serves on;
  /healthz and /api/info say `has_encoder: false` with the reason), or too many inspire requests at once.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from edge.bundle import Bundle, BundleError
from edge.errors import UserError
from edge.inspire import VARIATION_RADII_MILLI, InspireError, PhotoEncoder, inspired_ids
from edge.kiosk.service import ApiError, encode_png
from edge.photo_decode import MAX_PHOTO_BYTES, PhotoError, decode_photo

log = logging.getLogger(__name__)

INSPIRE_PATH = "/api/inspire"
MAX_BODY_BYTES = MAX_PHOTO_BYTES + 64 * 1024  # the body limit of this one path (the others stay small)
STALE_FRAME_S = 2.0  # a camera frame older than this is not "what the camera sees now"
MAX_CONCURRENT = 2  # decoding photos is CPU work: more at once are answered 503


class InspireDesk:
    """The encoder of the model serving now (reloaded after a hot swap) and its availability."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._model_id: str | None = None
        self._encoder: PhotoEncoder | None = None
        self._error: str | None = None
        self.busy = 0

    def _load(self, bundle: Bundle) -> None:
        self._model_id, self._encoder, self._error = bundle.model_id, None, None
        try:
            self._encoder = PhotoEncoder(bundle, num_threads=self.service.config.num_threads,
                                         delegate=self.service.config.delegate)
        except (BundleError, UserError) as exc:
            self._error = str(exc)
            log.warning("event=inspire_unavailable model_id=%s reason=%s", bundle.model_id, exc)
        except Exception as exc:  # the runtime refusing a damaged flatbuffer: the kiosk itself must serve on
            self._error = f"the encoder file cannot be loaded ({type(exc).__name__})"
            log.exception("event=inspire_unavailable model_id=%s", bundle.model_id)

    def encoder(self) -> tuple[PhotoEncoder | None, str | None]:
        """(encoder, None) when available for the model serving now, else (None, why)."""
        bundle = self.service.bundle
        with self._lock:
            if self._model_id != bundle.model_id:
                self._load(bundle)
            return self._encoder, self._error

    def health(self) -> dict[str, object]:
        encoder, error = self.encoder()
        return {"has_encoder": encoder is not None, "inspire": {"available": encoder is not None, "reason": error}}

    def frame_from_camera(self) -> np.ndarray:
        camera = self.service.camera
        if camera is None:
            raise ApiError(404, "this kiosk has no camera: send a photo (JPEG, PNG or WebP) in the request body")
        frame = camera.mailbox.latest()
        status = camera.status()
        if frame is None or status.last_frame_age_s is None:
            raise ApiError(503, "the camera has not sent a picture yet: wait a moment and try again")
        if status.last_frame_age_s > STALE_FRAME_S:
            raise ApiError(503, f"the camera stopped sending pictures {status.last_frame_age_s:.0f} s ago: "
                                "ask staff to check it")
        return frame.bgr

    def encode(self, encoder: PhotoEncoder, body: bytes) -> tuple[Any, np.ndarray]:
        """Decode (or take the camera frame), check and encode; returns (encoding, the model-input crop)."""
        bgr = decode_photo(body) if body else self.frame_from_camera()
        encoding = encoder.encode(bgr)
        crop = encoder.model_input(bgr)
        return encoding, crop


def _crop_png(crop: np.ndarray, encoder: PhotoEncoder) -> str:
    """The encoder's input as a PNG data URL (dequantized back to pixels)."""
    from edge.kernels import postprocess

    spec = encoder.entry.input
    if spec.scale is not None:
        rgb = postprocess(crop[None], scale=spec.scale, zero_point=spec.zero_point)[0]
    else:
        rgb = postprocess(crop[None].astype(np.float32))[0]
    return "data:image/png;base64," + base64.b64encode(encode_png(rgb)).decode("ascii")


def add_inspire_routes(app: FastAPI, service: Any) -> InspireDesk:
    """Add POST /api/inspire to `app` and the encoder's availability to /healthz."""
    desk = InspireDesk(service)
    service.health_extras.append(desk.health)

    @app.post(INSPIRE_PATH)
    async def inspire(request: Request, n: int | None = Query(default=None, ge=1),
                      class_: str | None = Query(default=None, alias="class", max_length=128)) -> JSONResponse:
        total = 1 + len(VARIATION_RADII_MILLI)
        if n is not None and n > total:
            raise ApiError(400, f"n must be at most {total} (the reconstruction and {total - 1} variations)")
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
        finally:
            desk.busy -= 1
        bundle = encoder.bundle
        cls = None
        if class_ is not None:
            cls = service.class_id(int(class_) if class_.isascii() and class_.isdigit() else class_)
        designs = inspired_ids(bundle, encoding, n, cls)
        service.check_depth(designs)
        await service.render(designs, "inspire")
        payload: dict[str, object] = {"designs": [service.design_json(d) for d in designs],
                                      "input": _crop_png(crop, encoder),
                                      "source": "photo" if body else "camera"}
        if bundle.class_names is not None and encoding.class_id is not None:
            payload["recognised"] = {"class": bundle.class_names[encoding.class_id],
                                     "confidence": round(float(encoding.class_confidence or 0.0), 3)}
        return JSONResponse(payload, headers={"Cache-Control": "no-store"})

    return desk
