"""The staff desk of one kiosk: the PIN guard, the capture pipeline and store, the model manager.

Its HTTP face is `edge.kiosk.routes.staff`.
"""

from __future__ import annotations

import io
import logging
import tarfile
import time
from pathlib import Path
from typing import Any

from edge.capture.pipeline import CapturePipeline, CaptureSettings
from edge.capture.store import CaptureStore
from edge.errors import UserError
from edge.kiosk.bundle_upload import MAX_UPLOAD_BYTES
from edge.kiosk.hot_swap import ModelManager, ModelRejected, Verified
from edge.kiosk.staff import StaffGuard, UnlockResult
from edge.kiosk.staff_media import FoundBundle, find_staff_key, list_bundles, roots_of

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

    # The staff key and the bundles found on the kiosk and on USB sticks (edge.kiosk.staff_media) -----------

    def unlock_with_key(self) -> UnlockResult:
        """A session if the staff key is plugged in (no PIN, whatever the lockout)."""
        config = self.service.config
        if not config.staff_key_sha256:
            return UnlockResult(None, "This kiosk has no staff key set up (staff_key_sha256 in its config).")
        key = find_staff_key(roots_of(config.usb_roots), config.staff_key_sha256)
        if key is None:
            return UnlockResult(None, "No staff key found: plug in the USB stick with atelier-staff.key.")
        log.info("event=staff_key_used path=%s", key)
        return self.guard.unlock_with_key()

    def bundles(self) -> list[FoundBundle]:
        """Bundles staff can install: folders in models_dir, folders and archives on USB sticks."""
        return list_bundles(self.manager.models_dir, roots_of(self.service.config.usb_roots))

    def install(self, bundle_id: str) -> tuple[bool, str, str]:
        """Verify and swap in a listed bundle (copied into models_dir first when it is on a stick).

        Returns:
            (ok, model_id or why not, the bundle folder's name).

        Raises:
            ModelRejected: the ID is not in the listing, or the bundle cannot be copied in.
        """
        found = next((b for b in self.bundles() if b.id == bundle_id), None)
        if found is None:
            raise ModelRejected("that bundle is no longer there (was the USB stick unplugged?)")
        if found.where == "kiosk":
            folder = found.path
        else:
            folder = self.manager.receive_upload(_archive_bytes(found))  # the upload's safety rules apply
        ok, detail = self.manager.submit(folder, f"installed from {found.where}")
        return ok, detail, folder.name

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


def _archive_bytes(found: FoundBundle) -> bytes:
    """A found bundle as the bytes of a .tar upload (an archive as it is, a folder packed in memory)."""
    try:
        if found.kind == "archive":
            if found.path.stat().st_size > MAX_UPLOAD_BYTES:
                raise ModelRejected(f"{found.path.name} is over {MAX_UPLOAD_BYTES // 2**20} MB")
            return found.path.read_bytes()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path in sorted(found.path.iterdir()):
                if path.is_file():
                    tar.add(path, arcname=path.name)
                    if buf.tell() > MAX_UPLOAD_BYTES:
                        raise ModelRejected(f"{found.path.name} is over {MAX_UPLOAD_BYTES // 2**20} MB")
        return buf.getvalue()
    except OSError as exc:
        raise ModelRejected(f"cannot read {found.path} ({exc.strerror or exc})") from None
