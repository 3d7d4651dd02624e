"""The inspire desk: the encoder of the model serving now, its availability for /healthz, and a photo or the
newest camera frame turned into an encoding (the route is `edge.kiosk.routes.inspire`).

A bundle whose encoder is missing or damaged still serves designs: the desk reports `has_encoder: false` with the
reason, and the route answers 503.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading

import numpy as np

from edge.bundle import Bundle, BundleError
from edge.errors import UserError
from edge.inspire import Encoding, PhotoEncoder
from edge.inspire_refine import Refined, Search, catalogue_latents, small_pictures
from edge.kiosk.api_error import ApiError
from edge.kiosk.latents import DesignId, encode_latent
from edge.kiosk.png import encode_png
from edge.kiosk.service import KioskService
from edge.photo_decode import decode_photo

log = logging.getLogger(__name__)

STALE_FRAME_S = 2.0  # a camera frame older than this is not "what the camera sees now"
MAX_CONCURRENT = 2  # decoding photos is CPU work: more at once are answered 503


class InspireDesk:
    """The encoder of the model serving now (reloaded after a hot swap) and its availability."""

    def __init__(self, service: KioskService) -> None:
        self.service = service
        self._lock = threading.Lock()
        self._model_id: str | None = None
        self._encoder: PhotoEncoder | None = None
        self._error: str | None = None
        self.busy = 0  # inspire requests decoding or encoding now (the route refuses above MAX_CONCURRENT)
        self._catalogues: dict[tuple[str, int | None], np.ndarray] = {}  # (model ID, class) -> 16 px pictures
        self._catalogue_lock: asyncio.Lock | None = None  # one build at a time (made in the server's loop)

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
        """What the desk adds to /healthz (the page shows its entry button when `has_encoder` is true)."""
        encoder, error = self.encoder()
        return {"has_encoder": encoder is not None, "inspire": {"available": encoder is not None, "reason": error}}

    def frame_from_camera(self) -> np.ndarray:
        """The newest camera frame (BGR), if it is fresh; ApiError 404 / 503 otherwise."""
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

    def encode(self, encoder: PhotoEncoder, body: bytes) -> tuple[Encoding, np.ndarray]:
        """Decode (or take the camera frame), check and encode; returns (encoding, the model-input crop)."""
        bgr = decode_photo(body) if body else self.frame_from_camera()
        encoding = encoder.encode(bgr)
        crop = encoder.model_input(bgr)
        return encoding, crop

    async def refine(self, bundle: Bundle, encoding: Encoding, target: np.ndarray,
                     class_id: int | None) -> Refined:
        """The search of `edge.inspire_refine` for designs more like `target` (the crop, RGB), each round one
        request to the generation worker (its fast path: these pictures are scored, never shown)."""
        search = Search(encoding, target, bundle.z_distribution, await self._catalogue(bundle, class_id))
        while not search.done:
            designs = [DesignId(bundle.model_id, class_id, encode_latent(z, bundle.z_distribution))
                       for z in search.candidates()]
            search.take(await self.service.score_designs(designs, small_pictures))
        return search.result()

    async def _catalogue(self, bundle: Bundle, class_id: int | None) -> np.ndarray:
        """The search's catalogue for this model and class: made on the first search (one worker request of
        CATALOGUE_SIZE designs, about half a second on a 2-core CPU), then kept; one build at a time, so two
        shoppers arriving together do not make it twice."""
        key = (bundle.model_id, class_id)
        if self._catalogue_lock is None:
            self._catalogue_lock = asyncio.Lock()
        async with self._catalogue_lock:
            catalogue = self._catalogues.get(key)
            if catalogue is None:
                designs = [DesignId(bundle.model_id, class_id, encode_latent(z, bundle.z_distribution))
                           for z in catalogue_latents(bundle.z_dim, bundle.z_distribution)]
                catalogue = await self.service.score_designs(
                    designs, lambda images: small_pictures(images).astype(np.float32))
                serving = {bundle.model_id, self.service.bundle.model_id}  # a swapped-out model's are dropped
                self._catalogues = {k: v for k, v in self._catalogues.items() if k[0] in serving}
                self._catalogues[key] = catalogue
                log.info("event=inspire_catalogue model_id=%s class=%s designs=%d", bundle.model_id, class_id,
                         len(designs))
        return catalogue


def crop_rgb(crop: np.ndarray, encoder: PhotoEncoder) -> np.ndarray:
    """The encoder's input dequantized back to RGB uint8 pixels."""
    from edge.kernels import postprocess

    spec = encoder.entry.input
    if spec.scale is not None:
        return postprocess(crop[None], scale=spec.scale, zero_point=spec.zero_point)[0]
    return postprocess(crop[None].astype(np.float32))[0]


def crop_png(rgb: np.ndarray) -> str:
    """The encoder's input (see `crop_rgb`) as a PNG data URL."""
    return "data:image/png;base64," + base64.b64encode(encode_png(rgb)).decode("ascii")
