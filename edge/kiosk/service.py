"""The kiosk's engine behind the HTTP layer: design IDs in, PNG pictures out, plus health.

`KioskService` owns the model slot (the verified bundle, its generation worker, latent resolver and design-ID
vocabulary, swapped together), the PNG cache and the camera feed. The HTTP routes (`edge.kiosk.routes`) only
validate parameters and call it; errors a client can fix are `ApiError`s with a status and a message.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge.bundle import Bundle
from edge.kiosk import latents
from edge.kiosk.api_error import ApiError
from edge.kiosk.camera import CameraFeed, CameraStatus, source_factory
from edge.kiosk.config import KioskConfig
from edge.kiosk.design_ids import DesignIds
from edge.kiosk.latents import DesignId, DesignIdError, LatentResolver
from edge.kiosk.png import PngCache, decode_png, encode_each, encode_png
from edge.kiosk.prometheus import KioskMetrics
from edge.kiosk.worker import GenerationWorker, WorkerBusyError, WorkerStoppedError, make_worker
from edge.upscaler import Upscaler, enlarge, load_upscaler

log = logging.getLogger(__name__)

MAX_SCALE = 16
MAX_SAVE_PX = 2048
MAX_WALK_FRAMES = 16
OLD_WORKER_GRACE_S = 2.0  # after a hot swap, the old model's worker keeps serving in-flight requests this long


@dataclass(frozen=True)
class _ModelSlot:
    bundle: Bundle
    worker: GenerationWorker
    resolver: LatentResolver
    ids: DesignIds
    upscaler: Upscaler | None  # the bundle's learned 2x upscaler (edge.upscaler), loaded with its model
    upscaler_error: str | None  # why a bundle's upscaler is unusable (None: usable, or it has none)


@dataclass
class _ErrorRecord:
    source: str
    message: str
    t: float


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
        worker = make_worker(
            bundle, num_threads=self.config.num_threads, delegate=self.config.delegate,
            queue_limit=self.config.queue_limit, metrics=self.metrics,
            max_rows=max(self.config.max_designs, MAX_WALK_FRAMES),
        )
        upscaler, why = load_upscaler(bundle, num_threads=self.config.num_threads, delegate=self.config.delegate)
        return _ModelSlot(bundle, worker, LatentResolver(worker.sample_latents, bundle.z_distribution),
                          DesignIds(bundle), upscaler, why)

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

    @property
    def ids(self) -> DesignIds:
        """The design-ID vocabulary of the bundle serving now (parse, check, name new designs)."""
        return self._slot.ids

    def swap_bundle(self, bundle: Bundle) -> None:
        """Serve `bundle` from now on: its worker is warmed up first, then bundle, worker, resolver and IDs are
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

    def record_error(self, source: str, message: str) -> None:
        """Remember the latest server-side error for /healthz."""
        with self._errors_lock:
            self._last_error = _ErrorRecord(source, message, time.monotonic())

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

    async def score_designs(self, designs: Sequence[DesignId], post: Callable[[np.ndarray], Any]) -> Any:
        """`post` of the designs' pictures, made on the worker's fast path (pictures nobody sees, e.g. scored)."""
        return await self._generate(designs, exact=False, post=post)

    async def render(self, designs: Sequence[DesignId], route: str) -> list[bytes]:
        """PNG bytes for each design: from the cache, the rest generated in one worker request."""
        keys = [str(d) for d in designs]
        pngs: list[bytes | None] = [self.cache.get(k) for k in keys]
        missing = [i for i, p in enumerate(pngs) if p is None]
        self.metrics.cache_hits.inc(len(keys) - len(missing))
        if missing:
            encoded = await self._generate([designs[i] for i in missing], post=encode_each)
            for i, data in zip(missing, encoded, strict=True):
                self.cache.put(keys[i], data)
                pngs[i] = data
        self.metrics.designs_served.inc(len(keys), route)
        return [p for p in pngs if p is not None]

    def upscaler(self) -> tuple[Upscaler | None, str | None]:
        """The learned 2x upscaler of the model serving now (loaded with it), or None and why not."""
        slot = self._slot
        return slot.upscaler, slot.upscaler_error

    async def design_png(self, design: DesignId, scale: int) -> bytes:
        """One design as PNG, enlarged `scale` times: by the bundle's learned upscaler (edge.upscaler) for even
        scales when it has one, else by the C++ bilinear upscale kernel."""
        slot = self._slot  # the upscaler of the model that made the design, even if a hot swap happens meanwhile
        (png,) = await self.render([design], "png")
        if scale == 1:
            return png
        if self.bundle.size_px * scale > MAX_SAVE_PX:
            raise ApiError(400, f"scale {scale} would make a picture over {MAX_SAVE_PX} px; "
                                f"the most for this model is {MAX_SAVE_PX // self.bundle.size_px}")

        def enlarged() -> bytes:
            picture = decode_png(png)
            upscaler = slot.upscaler if slot.bundle.model_id == design.model_id else None
            return encode_png(enlarge(picture, scale, upscaler), compress=True)

        return await asyncio.to_thread(enlarged)

    async def walk_strip(
        self, seed: int, start: int, count: int, class_id: int | None
    ) -> tuple[bytes, list[str]]:
        """Frames start..start+count-1 of the attract-mode walk as one horizontal strip PNG, and their IDs.

        Walk frames take the worker's fast path (any batch size): they match their IDs to within the few
        levels that batch sizes round differently, which nobody sees in a moving picture that is never saved.
        """
        if class_id is None and self.bundle.class_names is not None:
            class_id = self.ids.default_classes(seed, 1)[0]
        steps = self.config.walk_steps
        designs = [DesignId(self.bundle.model_id, class_id, latents.walk_frame(seed, f, steps))
                   for f in range(start, start + count)]
        def strip(images: np.ndarray) -> bytes:
            from edge.kernels import tile

            return encode_png(tile(images, cols=count, pad=0))

        data = await self._generate(designs, exact=False, post=strip)  # tiled and encoded in the worker thread
        self.metrics.designs_served.inc(count, "walk")
        return data, [str(d) for d in designs]

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
        if self.bundle.manifest.get("upscaler") is not None:
            upscaler, why = self.upscaler()
            report["upscaler"] = {"available": upscaler is not None, "reason": why}
        for extra in self.health_extras:
            report.update(extra())
        return report
