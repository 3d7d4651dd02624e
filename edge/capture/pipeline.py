"""One capture, start to finish: quality gate -> near-duplicate check -> face blur -> the capture store.

Every check runs on an *analysis copy* of the frame scaled down to `analysis_px` on its long side (INTER_AREA), so
the thresholds mean the same for a 720p and a 1080p camera and the checks stay cheap. Sharpness, exposure and the
hash look at the copy's centre square — the part of the frame the model sees and the trainer crops (the kiosk's
preview shows it), where staff hold the garment — so a fixed backdrop around it neither hides a blurry garment
nor makes two different garments look alike; faces are searched in the whole copy:

- sharpness: variance of the Laplacian of luma (`edge.kernels.sharpness`, C++); below `min_sharpness` the frame
  is refused as blurry (motion or focus);
- exposure: mean luma and the shares of near-black / near-white pixels (`edge.kernels.exposure`); a frame too
  dark or over-exposed is refused;
- near-duplicates: the 64-bit dHash (`edge.kernels.dhash64`) against the newest `duplicate_window` captures
  (`edge.kernels.hamming_nearest`); `duplicate_max_bits` or fewer differing bits is "the same picture again" —
  among the captures of about the same colour: a dHash sees only luma gradients, so a red and a blue t-shirt
  held the same way hash alike; a 2x2 mean-colour signature of the centre (each channel within
  `duplicate_colour_tolerance` levels) tells them apart.

A frame that passes is copied (never modified in place: the camera's frame is shared with the live preview),
scaled to at most `max_side_px`, its faces blurred (`edge.capture.faces`), and only that blurred copy is handed
to the store's writer: nothing unblurred ever reaches the disk.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge import kernels
from edge.capture.faces import FaceBlurrer, FaceBox, blur_region
from edge.capture.store import CaptureRecord, CaptureStore, FrameQuality, validate_class_name
from edge.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CaptureSettings:
    """Thresholds of the capture pipeline (kiosk config keys `capture_<name>`)."""

    min_sharpness: float = 150.0  # Laplacian variance of the analysis copy's centre; below = blurry
    min_mean_luma: float = 45.0  # mean luma 0..255; below = too dark
    max_mean_luma: float = 225.0  # above = over-exposed
    max_dark_fraction: float = 0.6  # share of near-black pixels (luma <= 16) above which = too dark
    max_bright_fraction: float = 0.6  # share of near-white pixels (luma >= 235) above which = over-exposed
    duplicate_max_bits: int = 5  # dHash distance at or below which a frame repeats a recent capture (-1: off)
    duplicate_window: int = 200  # how many of the newest captures a frame is compared with
    duplicate_colour_tolerance: int = 24  # a duplicate's 2x2 mean colours differ by at most this per channel
    face_blur: bool = True  # blur faces before writing (privacy; on by default)
    analysis_px: int = 480  # long side of the analysis copy the checks (and face detection) run on
    max_side_px: int = 960  # long side of the stored JPEG (larger frames are scaled down; 0 = keep size)

    def validate(self) -> CaptureSettings:
        """Raise UserError for a setting out of range; returns self."""
        checks = [
            (self.min_sharpness >= 0, "capture_min_sharpness must be >= 0"),
            (0 <= self.min_mean_luma < self.max_mean_luma <= 255,
             "capture_min_mean_luma < capture_max_mean_luma, both in 0..255"),
            (0 < self.max_dark_fraction <= 1, "capture_max_dark_fraction must be in (0, 1]"),
            (0 < self.max_bright_fraction <= 1, "capture_max_bright_fraction must be in (0, 1]"),
            (-1 <= self.duplicate_max_bits <= 32, "capture_duplicate_max_bits must be in -1..32 (-1: no check)"),
            (0 <= self.duplicate_window <= 100_000, "capture_duplicate_window must be in 0..100000"),
            (0 <= self.duplicate_colour_tolerance <= 255, "capture_duplicate_colour_tolerance must be in 0..255"),
            (64 <= self.analysis_px <= 4096, "capture_analysis_px must be in 64..4096"),
            (self.max_side_px == 0 or 64 <= self.max_side_px <= 8192,
             "capture_max_side_px must be 0 (keep) or in 64..8192"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(f"capture settings: {message}")
        return self


class CaptureRejected(UserError):
    """A frame the pipeline refused; `reason` is a short code, the message says what to do.

    Reason codes: blurry, too_dark, over_exposed, duplicate, bad_frame, bad_class, store_full, store_error.
    """

    def __init__(self, reason: str, message: str, measures: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.measures = measures or {}


@dataclass(frozen=True)
class Assessment:
    """The checks' measurements of one frame (analysis copy)."""

    sharpness: float
    mean_luma: float
    dark_fraction: float
    bright_fraction: float
    dhash: int
    colour: str = ""  # 2x2 mean BGR of the centre square, 24 hex digits

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["dhash"] = f"{self.dhash:016x}"
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in data.items()}


def _colour_signature(bgr: np.ndarray) -> str:
    """The mean BGR of the image's four quadrants as 24 hex digits."""
    import cv2

    return cv2.resize(bgr, (2, 2), interpolation=cv2.INTER_AREA).tobytes().hex()


def _colours_close(a: str, b: str, tolerance: int) -> bool:
    """True when two colour signatures differ by at most `tolerance` in every channel ('' matches anything)."""
    if not a or not b:
        return True
    diff = np.abs(np.frombuffer(bytes.fromhex(a), np.uint8).astype(np.int16)
                  - np.frombuffer(bytes.fromhex(b), np.uint8).astype(np.int16))
    return bool(diff.max() <= tolerance)


def _scaled(bgr: np.ndarray, long_side: int) -> np.ndarray:
    """`bgr` scaled down (INTER_AREA) so its long side is at most `long_side`; the frame itself when smaller."""
    import cv2

    h, w = bgr.shape[:2]
    if max(h, w) <= long_side:
        return bgr
    s = long_side / max(h, w)
    return cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


class CapturePipeline:
    """Gate, dedupe, blur and store captures; thread-safe (captures are taken one at a time).

    Args:
        store: a capture store opened for writing.
        settings: thresholds (see CaptureSettings).
        face_blurrer: the face blurrer to use (default: OpenCV's frontal-face cascade); required when
            `settings.face_blur` is on.
    """

    def __init__(
        self,
        store: CaptureStore,
        settings: CaptureSettings | None = None,
        *,
        face_blurrer: FaceBlurrer | None = None,
    ) -> None:
        self.store = store
        self.settings = (settings or CaptureSettings()).validate()
        self.blurrer = face_blurrer
        if self.settings.face_blur and self.blurrer is None:
            self.blurrer = FaceBlurrer(detect_px=self.settings.analysis_px)
        if not self.settings.face_blur:
            log.warning("capture face blurring is OFF: faces in view are stored as they are")
        self._lock = threading.Lock()
        window = self.settings.duplicate_window
        self._recent: deque[tuple[str, int, str]] = deque(reversed(store.recent(window)), maxlen=max(window, 1))

    def assess(self, bgr: np.ndarray) -> tuple[Assessment, np.ndarray]:
        """Measure a frame: (the measurements, the analysis copy they were taken on).

        Raises:
            CaptureRejected: "bad_frame" when it is not an H x W x 3 uint8 image.
        """
        if not isinstance(bgr, np.ndarray) or bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3 \
                or min(bgr.shape[:2]) < 16:
            raise CaptureRejected("bad_frame", "no usable camera frame (need a colour image of at least 16 px)")
        analysis = _scaled(bgr, self.settings.analysis_px)
        h, w = analysis.shape[:2]
        side = min(h, w)
        centre = analysis[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
        exp = kernels.exposure(centre)
        return Assessment(
            sharpness=float(kernels.sharpness(centre)),
            mean_luma=float(exp.mean_luma),
            dark_fraction=float(exp.dark_fraction),
            bright_fraction=float(exp.bright_fraction),
            dhash=int(kernels.dhash64(centre)),
            colour=_colour_signature(centre),
        ), analysis

    def gate(self, a: Assessment) -> None:
        """Raise CaptureRejected when the measurements fail a threshold (blurry, too dark, over-exposed)."""
        s = self.settings
        measures = a.to_json()
        if a.mean_luma < s.min_mean_luma or a.dark_fraction > s.max_dark_fraction:
            raise CaptureRejected(
                "too_dark", f"too dark (mean brightness {a.mean_luma:.0f}/255, {a.dark_fraction:.0%} near-black): "
                            "add light or move the garment into the light", measures)
        if a.mean_luma > s.max_mean_luma or a.bright_fraction > s.max_bright_fraction:
            raise CaptureRejected(
                "over_exposed", f"over-exposed (mean brightness {a.mean_luma:.0f}/255, {a.bright_fraction:.0%} "
                                "near-white): reduce the light or turn the garment away from it", measures)
        if a.sharpness < s.min_sharpness:
            raise CaptureRejected(
                "blurry", f"blurry (sharpness {a.sharpness:.0f}, needs {s.min_sharpness:.0f}): hold the garment "
                          "still and let the camera focus", measures)

    def _duplicate_of(self, dhash: int, colour: str) -> tuple[str, int] | None:
        if self.settings.duplicate_max_bits < 0 or not self._recent:
            return None
        candidates = [(cid, h) for cid, h, c in self._recent
                      if _colours_close(colour, c, self.settings.duplicate_colour_tolerance)]
        if not candidates:
            return None
        table = np.fromiter((h for _, h in candidates), dtype=np.uint64, count=len(candidates))
        index, distance = kernels.hamming_nearest(dhash, table)
        if distance <= self.settings.duplicate_max_bits:
            return candidates[index][0], int(distance)
        return None

    def capture(self, bgr: np.ndarray, class_name: str, *, source: str = "kiosk") -> CaptureRecord:
        """Check, blur and store one frame.

        Args:
            bgr: the camera frame, H x W x 3 uint8 BGR (not modified).
            class_name: the garment's class (one of the model's or a new one).
            source: recorded with the capture ("kiosk", "cli").

        Returns:
            The stored capture's manifest row.

        Raises:
            CaptureRejected: with the reason (bad_class, bad_frame, too_dark, over_exposed, blurry, duplicate,
                store_full, store_error) and a message for the screen.
        """
        from edge.capture.store import StoreError, StoreFull

        try:
            class_name = validate_class_name(class_name)
        except StoreError as exc:
            raise CaptureRejected("bad_class", str(exc)) from None
        assessment, analysis = self.assess(bgr)
        self.gate(assessment)
        with self._lock:
            dup = self._duplicate_of(assessment.dhash, assessment.colour)
            if dup is not None:
                raise CaptureRejected(
                    "duplicate", f"the same picture as capture {dup[0]} ({dup[1]} of 64 bits differ): move or "
                                 "turn the garment, or capture another one", assessment.to_json())
            out = _scaled(bgr, self.settings.max_side_px) if self.settings.max_side_px else bgr
            out = out.copy() if out is bgr else out  # never touch the camera's frame
            faces = self._blur_faces(out, analysis) if self.settings.face_blur else 0
            quality = FrameQuality(assessment.sharpness, assessment.mean_luma, assessment.dark_fraction,
                                   assessment.bright_fraction, assessment.dhash, faces, assessment.colour)
            try:
                record = self.store.add_frame(out, class_name=class_name, quality=quality, source=source)
            except StoreFull as exc:
                raise CaptureRejected("store_full", str(exc)) from None
            except StoreError as exc:
                raise CaptureRejected("store_error", str(exc)) from None
            self._recent.append((record.id, assessment.dhash, assessment.colour))
        return record

    def _blur_faces(self, out: np.ndarray, analysis: np.ndarray) -> int:
        """Blur, in place in `out`, the faces found on the analysis copy; returns how many."""
        assert self.blurrer is not None
        boxes = self.blurrer.detect(analysis)
        sy, sx = out.shape[0] / analysis.shape[0], out.shape[1] / analysis.shape[1]
        for b in boxes:
            blur_region(out, FaceBox(int(b.x * sx), int(b.y * sy), round(b.w * sx), round(b.h * sy)),
                        self.blurrer.margin_frac)
        if boxes:
            log.info("event=faces_blurred n=%d", len(boxes))
        return len(boxes)
