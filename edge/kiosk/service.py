"""The kiosk's engine behind the HTTP layer: design IDs in, PNG pictures out, plus health and camera preview.

`KioskService` owns the verified bundle, the generation worker, the PNG cache and the camera feed. The HTTP
routes (`edge.kiosk.app`) only validate parameters and call it; errors a client can fix are `ApiError`s with a
status and a message.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.bundle import Bundle
from edge.kiosk import latents
from edge.kiosk.camera import CameraFeed, CameraStatus, Frame, source_factory
from edge.kiosk.config import KioskConfig
from edge.kiosk.latents import DesignId, DesignIdError, LatentResolver, Mix, Neighbour, Sample
from edge.kiosk.metrics import KioskMetrics
from edge.kiosk.worker import GenerationWorker, PngCache, WorkerBusyError, WorkerStoppedError

log = logging.getLogger(__name__)

PREVIEW_HEIGHT_PX = 240
MAX_SCALE = 16
MAX_SAVE_PX = 2048
MAX_WALK_FRAMES = 16
OLD_WORKER_GRACE_S = 2.0  # after a hot swap, the old model's worker keeps serving in-flight requests this long


class ApiError(Exception):
    """A request the kiosk refuses; `status` is the HTTP status, the message tells the client what to fix."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class _ModelSlot:
    bundle: Bundle
    worker: GenerationWorker
    resolver: LatentResolver


@dataclass
class _ErrorRecord:
    source: str
    message: str
    t: float


@functools.cache  # made once per kind: encode_png runs for every design served
def _png_params(compress: bool) -> tuple[int, ...]:
    import cv2

    if not compress:
        # Stored deflate blocks, no filter: 0.05 ms for a 128 px design against 0.43 ms for the fastest real
        # compression (Huffman-only, "up" filter), at 49 KB instead of 25 KB. The page is served over loopback,
        # where bytes are free and the CPU is what the shoppers wait for.
        params = [cv2.IMWRITE_PNG_COMPRESSION, 0]
        if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.10
            params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]
        return tuple(params)
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
    return tuple(params)


def encode_png(rgb: np.ndarray, *, compress: bool = False) -> bytes:
    """uint8 RGB (H, W, 3) -> PNG bytes (OpenCV). Uncompressed for the screen; `compress` for files people keep."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]), _png_params(compress))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def _encode_each(images: np.ndarray) -> list[bytes]:
    return [encode_png(im) for im in images]


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 RGB (H, W, 3)."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


class KioskService:
    """Designs, health and camera for one bundle.

    Args:
        config: the kiosk settings.
        bundle: a bundle that `edge.bundle.load_bundle` verified.
        camera: a feed to use instead of one built from `config.camera` (tests pass failing sources here).
        metrics: the metrics registry (a new one when None).
    """

    def __init__(
        self,
        config: KioskConfig,
        bundle: Bundle,
        *,
        camera: CameraFeed | None = None,
        metrics: KioskMetrics | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or KioskMetrics()
        # The model in service: bundle, worker and resolver swap together (edge.kiosk.hot_swap).
        self._slot = self._make_slot(bundle)
        self._swap_lock = threading.Lock()
        self.health_extras: list[Callable[[], dict[str, object]]] = []  # more /healthz keys (staff desk)
        self.cache = PngCache(config.cache_designs)
        self._errors_lock = threading.Lock()
        self._last_error: _ErrorRecord | None = None
        self.camera = camera if camera is not None else self._camera_from_config()
        self.metrics.camera_status = self._camera_counts
        self.started_t = time.monotonic()
        self.stopping = False

    # Model -----------------------------------------------------------------------------------------------

    def _make_slot(self, bundle: Bundle) -> _ModelSlot:
        worker = GenerationWorker(
            bundle, num_threads=self.config.num_threads, delegate=self.config.delegate,
            queue_limit=self.config.queue_limit, metrics=self.metrics,
            max_rows=max(self.config.max_designs, MAX_WALK_FRAMES),
        )
        return _ModelSlot(bundle, worker, LatentResolver(worker.sample_latents, bundle.z_distribution))

    @property
    def bundle(self) -> Bundle:
        """The bundle serving now."""
        return self._slot.bundle

    @property
    def worker(self) -> GenerationWorker:
        """The generation worker of the bundle serving now."""
        return self._slot.worker

    @property
    def resolver(self) -> LatentResolver:
        """Latent resolver of the bundle serving now."""
        return self._slot.resolver

    def swap_bundle(self, bundle: Bundle) -> None:
        """Serve `bundle` from now on: its worker is warmed up first, then bundle, worker and resolver are
        replaced together under a lock; the old worker finishes the requests it has queued, then stops."""
        slot = self._make_slot(bundle)
        slot.worker.start()
        with self._swap_lock:
            old, self._slot = self._slot, slot
        self.cache.clear()
        # Requests that took the old slot a moment ago still reach its worker; it stops a little later.
        timer = threading.Timer(OLD_WORKER_GRACE_S, old.worker.stop)
        timer.daemon = True
        timer.start()
        log.info("event=model_in_service model_id=%s name=%s", bundle.model_id, bundle.name)

    # Lifecycle -------------------------------------------------------------------------------------------

    def _camera_from_config(self) -> CameraFeed | None:
        if not self.config.camera:
            return None
        factory = source_factory(self.config.camera)  # raises UserError for a bad URI before anything starts
        return CameraFeed(factory, self.preprocess, uri=self.config.camera,
                          stall_timeout_s=self.config.stall_timeout_s)

    def _camera_counts(self) -> dict[str, int]:
        if self.camera is None:
            return {}
        status = self.camera.status()
        return {"reconnects": status.reconnects, "failures": status.failures, "frames": status.frames}

    def preprocess(self, bgr: np.ndarray) -> np.ndarray:
        """A camera frame -> the model-input crop (RGB float in [-1, 1], size_px square), C++ kernel."""
        from edge.kernels import preprocess_frame

        return preprocess_frame(bgr, self.bundle.size_px, crop="center", out="float")

    def start(self) -> None:
        """Warm the models up, start the worker and the camera."""
        self.worker.start()
        if self.camera is not None:
            self.camera.start()
        self.started_t = time.monotonic()

    def stop(self) -> None:
        """Stop the camera and the worker (pending requests fail)."""
        self.stopping = True
        if self.camera is not None:
            self.camera.stop()
        self.worker.stop()

    # Design IDs ------------------------------------------------------------------------------------------

    def record_error(self, source: str, message: str) -> None:
        """Remember the latest server-side error for /healthz."""
        with self._errors_lock:
            self._last_error = _ErrorRecord(source, message, time.monotonic())

    def parse_id(self, text: str) -> DesignId:
        """Parse a design ID and check it belongs to this kiosk's model and class list.

        Raises:
            ApiError: 400 for a malformed ID or a class this model lacks, 409 for another model's ID.
        """
        try:
            design = latents.parse_design_id(text)
        except DesignIdError as exc:
            raise ApiError(400, f"bad design ID: {exc}") from None
        if design.model_id != self.bundle.model_id:
            raise ApiError(409, f"design {text} was made by model {design.model_id}; this kiosk serves model "
                                f"{self.bundle.model_id}, so it cannot regenerate it")
        self._check_class_id(design.class_id, text)
        return design

    def _check_class_id(self, class_id: int | None, where: str) -> None:
        names = self.bundle.class_names
        if names is None and class_id is not None:
            raise ApiError(400, f"{where}: this model is unconditional; its designs have class 'u'")
        if names is not None and (class_id is None or class_id >= len(names)):
            raise ApiError(400, f"{where}: this model draws classes c0..c{len(names) - 1} "
                                f"({', '.join(names)}); the ID needs one of them")

    def class_id(self, value: str | int | None) -> int | None:
        """A class given by name or index -> its index (None when not given).

        Raises:
            ApiError: 400 for an unknown class, or any class on an unconditional model.
        """
        names = self.bundle.class_names
        if value is None:
            return None
        if names is None:
            raise ApiError(400, "this model is unconditional: leave out 'class'")
        if isinstance(value, int) and 0 <= value < len(names):
            return value
        if isinstance(value, str) and value in names:
            return names.index(value)
        raise ApiError(400, f"unknown class {value!r}; this model knows: {', '.join(names)} "
                            f"(or their numbers 0..{len(names) - 1})")

    def design_json(self, design: DesignId) -> dict[str, object]:
        """The JSON the page gets for a design: ID, picture URL, shareable page URL, class and operation."""
        text = str(design)
        names = self.bundle.class_names
        return {
            "id": text,
            "url": f"/api/design/{text}.png",
            "page": f"/d/{text}",
            "class": None if names is None or design.class_id is None else names[design.class_id],
            "class_id": design.class_id,
            **latents.describe(design.latent),
        }

    def _default_class(self, seed: int, n: int) -> list[int | None]:
        names = self.bundle.class_names
        if names is None:
            return [None] * n
        # No class asked for: a deterministic mix of classes drawn from the seed (shown in each ID).
        rng = np.random.default_rng([seed, 0x6B696F736B])
        return [int(c) for c in rng.integers(0, len(names), size=n)]

    def sample_ids(self, n: int, seed: int | None, class_id: int | None) -> tuple[int, list[DesignId]]:
        """IDs of n new designs: samples 0..n-1 of `seed` (random when None)."""
        seed = secrets.randbelow(latents.MAX_SEED + 1) if seed is None else seed
        classes = [class_id] * n if class_id is not None else self._default_class(seed, n)
        return seed, [DesignId(self.bundle.model_id, classes[i], Sample(seed, i)) for i in range(n)]

    def neighbour_ids(self, parent: DesignId, n: int, radius: float, start: int,
                      class_id: int | None) -> list[DesignId]:
        """IDs of neighbours start..start+n-1 of `parent` at `radius` (rounded to 1/1000)."""
        radius_milli = round(radius * 1000)
        if not 1 <= radius_milli <= latents.MAX_RADIUS_MILLI:
            raise ApiError(400, f"radius must be in 0.001..{latents.MAX_RADIUS_MILLI / 1000:g}, got {radius}")
        if start + n - 1 > latents.MAX_NEIGHBOUR:
            raise ApiError(400, f"start + n must stay within {latents.MAX_NEIGHBOUR + 1}")
        cls = parent.class_id if class_id is None else class_id
        return [DesignId(self.bundle.model_id, cls, Neighbour(parent.latent, j, radius_milli))
                for j in range(start, start + n)]

    def mix_ids(self, a: DesignId, b: DesignId, steps: int, class_id: int | None) -> list[DesignId]:
        """IDs of the steps+1 designs from `a` to `b` (both ends included)."""
        cls = a.class_id if class_id is None else class_id
        return [DesignId(self.bundle.model_id, cls, Mix(a.latent, b.latent, k, steps))
                for k in range(steps + 1)]

    def check_depth(self, designs: Sequence[DesignId]) -> None:
        """Refuse IDs that would not parse back (too long or too deep), so every ID handed out is usable."""
        for d in designs:
            try:
                latents.parse_design_id(str(d))
            except DesignIdError as exc:
                raise ApiError(400, f"that design cannot be taken further: {exc}") from None

    # Pictures --------------------------------------------------------------------------------------------

    async def _generate(self, designs: Sequence[DesignId], exact: bool = True,
                        post: Callable[[np.ndarray], Any] | None = None) -> Any:
        slot = self._slot  # one model for the whole request, even if a hot swap happens meanwhile
        if any(d.model_id != slot.bundle.model_id for d in designs):
            raise ApiError(409, f"the kiosk now serves model {slot.bundle.model_id}; ask for new designs")
        try:
            z = slot.resolver.vectors([d.latent for d in designs])  # ~15 us a design: cheaper than a thread hop
        except DesignIdError as exc:  # an encoded latent of another length than this model's
            raise ApiError(400, f"bad design ID: {exc}") from None
        classes = None if slot.bundle.class_names is None else [int(d.class_id or 0) for d in designs]
        try:
            return await slot.worker.generate(z, classes, exact=exact, post=post)
        except WorkerBusyError as exc:
            raise ApiError(503, str(exc)) from None
        except WorkerStoppedError as exc:
            if self._slot is not slot:  # its model was swapped out while it waited
                raise ApiError(409, f"the kiosk now serves model {self.bundle.model_id}; ask for new designs") \
                    from None
            raise ApiError(503, str(exc)) from None

    async def render(self, designs: Sequence[DesignId], route: str) -> list[bytes]:
        """PNG bytes for each design: from the cache, the rest generated in one worker request."""
        keys = [str(d) for d in designs]
        pngs: list[bytes | None] = [self.cache.get(k) for k in keys]
        missing = [i for i, p in enumerate(pngs) if p is None]
        self.metrics.cache_hits.inc(len(keys) - len(missing))
        if missing:
            encoded = await self._generate([designs[i] for i in missing], post=_encode_each)
            for i, data in zip(missing, encoded, strict=True):
                self.cache.put(keys[i], data)
                pngs[i] = data
        self.metrics.designs_served.inc(len(keys), route)
        return [p for p in pngs if p is not None]

    async def design_png(self, design: DesignId, scale: int) -> bytes:
        """One design as PNG, enlarged `scale` times by the C++ upscale kernel (bilinear: a smooth print)."""
        (png,) = await self.render([design], "png")
        if scale == 1:
            return png
        if self.bundle.size_px * scale > MAX_SAVE_PX:
            raise ApiError(400, f"scale {scale} would make a picture over {MAX_SAVE_PX} px; "
                                f"the most for this model is {MAX_SAVE_PX // self.bundle.size_px}")

        def enlarge() -> bytes:
            from edge.kernels import upscale

            return encode_png(upscale(decode_png(png), scale, mode="bilinear"), compress=True)

        return await asyncio.to_thread(enlarge)

    async def walk_strip(
        self, seed: int, start: int, count: int, class_id: int | None
    ) -> tuple[bytes, list[str]]:
        """Frames start..start+count-1 of the attract-mode walk as one horizontal strip PNG, and their IDs.

        Walk frames take the worker's fast path (any batch size): they match their IDs to within the few
        levels that batch sizes round differently, which nobody sees in a moving picture that is never saved.
        """
        if class_id is None and self.bundle.class_names is not None:
            class_id = self._default_class(seed, 1)[0]
        steps = self.config.walk_steps
        designs = [DesignId(self.bundle.model_id, class_id, latents.walk_frame(seed, f, steps))
                   for f in range(start, start + count)]
        def strip(images: np.ndarray) -> bytes:
            from edge.kernels import tile

            return encode_png(tile(images, cols=count, pad=0))

        data = await self._generate(designs, exact=False, post=strip)  # tiled and encoded in the worker thread
        self.metrics.designs_served.inc(count, "walk")
        return data, [str(d) for d in designs]

    # Camera ----------------------------------------------------------------------------------------------

    def preview_jpeg(self, frame: Frame, quality: int = 80) -> bytes:
        """The live frame beside the model-input crop (what the model would see), as one JPEG."""
        import cv2

        from edge.kernels import postprocess, upscale

        h, w = frame.bgr.shape[:2]
        live = cv2.resize(frame.bgr, (max(1, round(w * PREVIEW_HEIGHT_PX / h)), PREVIEW_HEIGHT_PX),
                          interpolation=cv2.INTER_AREA)
        crop_rgb = postprocess(frame.model_input[None])[0]
        factor = max(1, PREVIEW_HEIGHT_PX // crop_rgb.shape[0])
        crop = upscale(crop_rgb, factor, mode="nearest")[:, :, ::-1]
        panel = np.full((PREVIEW_HEIGHT_PX, crop.shape[1], 3), 32, dtype=np.uint8)
        top = (PREVIEW_HEIGHT_PX - crop.shape[0]) // 2
        panel[top : top + crop.shape[0]] = crop[:PREVIEW_HEIGHT_PX]
        ok, buf = cv2.imencode(".jpg", np.hstack([live, panel]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        return buf.tobytes()

    # Health ----------------------------------------------------------------------------------------------

    def healthy(self) -> bool:
        """True while the generation worker runs and is not wedged (the camera is reported, not required)."""
        return not self.stopping and self.worker.healthy()

    def health(self) -> dict[str, object]:
        """What /healthz reports."""
        cam: CameraStatus | None = self.camera.status() if self.camera is not None else None
        with self._errors_lock:
            err = self._last_error
        candidates = []
        if err is not None:
            candidates.append({"source": err.source, "message": err.message,
                               "age_s": round(time.monotonic() - err.t, 3)})
        report: dict[str, object] = {
            "status": "ok" if self.healthy() else "unhealthy",
            "model_id": self.bundle.model_id,
            "model_name": self.bundle.name,
            "uptime_s": round(time.monotonic() - self.started_t, 3),
            "hardware": self.config.hardware,
            "backend": self.worker.backend,
            "worker": self.worker.status(),
            "camera": None if cam is None else {
                "uri": cam.uri, "state": cam.state, "frames": cam.frames, "failures": cam.failures,
                "reconnects": cam.reconnects, "last_error": cam.last_error,
                "last_frame_age_s": None if cam.last_frame_age_s is None else round(cam.last_frame_age_s, 3),
            },
            "last_error": candidates[0] if candidates else None,
        }
        for extra in self.health_extras:
            report.update(extra())
        return report
