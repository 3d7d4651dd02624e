"""The staff desk of one kiosk: the PIN guard, the capture pipeline and store, the model manager.

Its HTTP face is `edge.kiosk.routes.staff`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from edge.capture.pipeline import CapturePipeline, CaptureSettings
from edge.capture.store import CaptureStore
from edge.errors import UserError
from edge.kiosk.hot_swap import ModelManager, Verified
from edge.kiosk.staff import StaffGuard

log = logging.getLogger(__name__)


def capture_settings(config: Any) -> CaptureSettings:
    """The pipeline thresholds from the kiosk config's `capture_*` keys."""
    return CaptureSettings(
        min_sharpness=config.capture_min_sharpness,
        min_mean_luma=config.capture_min_mean_luma,
        max_mean_luma=config.capture_max_mean_luma,
        duplicate_max_bits=config.capture_duplicate_max_bits,
        face_blur=config.capture_face_blur,
    ).validate()


class StaffDesk:
    """The staff side of one kiosk: PIN guard, capture pipeline (store opened at start), model manager.

    Args:
        service: the running KioskService.
        clock: time source for the PIN rate limit (tests).
    """

    def __init__(self, service: Any, *, clock: Any = time.monotonic) -> None:
        config = service.config
        self.service = service
        self.guard = StaffGuard(config.staff_pin_hash, clock=clock)
        self.settings = capture_settings(config)
        self.store: CaptureStore | None = None
        self.pipeline: CapturePipeline | None = None
        self.store_error: str | None = None
        models_dir = Path(config.models_dir)
        watch = models_dir.is_dir() and config.models_watch_s > 0
        self.manager = ModelManager(self._swap, Path(service.bundle.path),
                                    models_dir if models_dir.is_dir() else None,
                                    poll_s=config.models_watch_s if watch else 0.0,
                                    num_threads=config.num_threads, delegate=config.delegate)

    def _swap(self, verified: Verified) -> None:
        self.service.swap_bundle(verified.bundle)

    def start(self) -> None:
        """Open the capture store (staff mode only) and start the model watcher."""
        config = self.service.config
        if self.guard.enabled:
            try:
                max_bytes = config.capture_max_mb * 1024 * 1024 if config.capture_max_mb > 0 else None
                self.store = CaptureStore(config.capture_store, max_bytes=max_bytes,
                                          min_free_bytes=config.capture_min_free_mb * 1024 * 1024)
                self.pipeline = CapturePipeline(self.store, self.settings)
                log.info("event=capture_ready store=%s captures=%d face_blur=%s", self.store.root,
                         len(self.store), self.settings.face_blur)
            except UserError as exc:
                self.store_error = str(exc)
                log.error("event=capture_unavailable error=%r", self.store_error)
        self.manager.start()

    def stop(self) -> None:
        """Stop the watcher and close the store."""
        self.manager.stop()
        if self.store is not None:
            self.store.close()

    def health(self) -> dict[str, object]:
        """The /healthz additions: the model swap status and why a bundle was rejected."""
        status = self.manager.status()
        return {
            "model_error": status["model_error"],
            "models": status,
            "capture": {"enabled": self.guard.enabled, "store": None if self.store is None else str(self.store.root),
                        "error": self.store_error},
        }
