"""Privacy: find faces in a capture and blur them beyond recognition before anything is written.

Detection is OpenCV's bundled frontal-face Haar cascade (`cv2.data.haarcascades`, offline, no model download;
`haarcascade_frontalface_alt2`, which measured here found the test portrait at every size from 80 px up in a 1080p
frame with no false alarm on garment scenes, where the `default` cascade missed some and fired on garments), run on a
grayscale copy scaled down to `detect_px` on its long side (the cascade's cost grows with the pixel count: 480 px
keeps it near 20 ms on a 2-core CPU, and a face of 80 px in a 1080p frame is still 20 px there). Histogram
equalisation is off by default: on textured garment scenes it let far more windows through the early stages and
tripled the cost. Each face box, grown by a margin, is replaced by
a coarse mosaic (about 6 cells across the face) and then Gaussian-blurred: the mosaic throws the detail away,
so no deblurring can bring it back; the blur hides the cell edges.

Haar cascades miss some faces (strong profile, heavy occlusion, very small or dark faces): blurring is a
safeguard, staff still frame garments, not people.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_CASCADE = "haarcascade_frontalface_alt2.xml"


class FaceBlurError(UserError):
    """Face blurring cannot run (no cascade); captures are refused rather than stored unblurred."""


@dataclass(frozen=True)
class FaceBox:
    """A face in frame coordinates (pixels)."""

    x: int
    y: int
    w: int
    h: int


def cascade_path(name: str = DEFAULT_CASCADE) -> Path:
    """The path of one of OpenCV's bundled Haar cascades.

    Raises:
        FaceBlurError: this OpenCV build ships no cascades (OpenCV 5 moved them out of the wheel).
    """
    import cv2

    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / name
    if not hasattr(cv2, "CascadeClassifier") or not path.is_file():
        raise FaceBlurError(
            f"OpenCV {cv2.__version__} has no bundled Haar cascade {name}: install opencv-python-headless<5 "
            "(the version pyproject.toml asks for), or turn face blurring off in the kiosk config "
            "(capture_face_blur = false) only where no face can be in view"
        )
    return path


class FaceBlurrer:
    """Detects faces with a Haar cascade and blurs them in a copy of the frame.

    Args:
        cascade: file name of an OpenCV bundled cascade, or a path to a cascade XML.
        detect_px: long side of the grayscale copy the cascade runs on.
        scale_factor: the cascade's pyramid step (smaller finds more, slower).
        min_neighbors: overlapping detections needed to accept a face (higher: fewer false alarms).
        min_face_frac: smallest face searched, as a fraction of the detection image's short side (at least 16 px).
        margin_frac: each face box grows by this fraction on every side before it is blurred (hair, ears).
        equalize: equalise the histogram first (helps dark faces; costs about 3x on textured scenes).
    """

    def __init__(
        self,
        cascade: str = DEFAULT_CASCADE,
        *,
        detect_px: int = 480,
        scale_factor: float = 1.2,
        min_neighbors: int = 3,
        min_face_frac: float = 0.06,
        margin_frac: float = 0.25,
        equalize: bool = False,
    ) -> None:
        import cv2

        path = Path(cascade) if Path(cascade).is_file() else cascade_path(cascade)
        self._classifier = cv2.CascadeClassifier(str(path))
        if self._classifier.empty():
            raise FaceBlurError(f"cannot load the face cascade {path}")
        if detect_px < 64 or scale_factor <= 1.0 or min_neighbors < 0 or not 0 < min_face_frac < 1:
            raise FaceBlurError("face blur settings out of range: detect_px >= 64, scale_factor > 1, "
                                "min_neighbors >= 0, 0 < min_face_frac < 1")
        self.detect_px = detect_px
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face_frac = min_face_frac
        self.margin_frac = margin_frac
        self.equalize = equalize
        self._lock = threading.Lock()  # a CascadeClassifier is not safe to share between threads

    def detect(self, bgr: np.ndarray) -> list[FaceBox]:
        """Faces in a BGR (or gray) frame, in the frame's pixel coordinates."""
        import cv2

        h, w = bgr.shape[:2]
        scale = min(1.0, self.detect_px / max(h, w))
        small = bgr if scale == 1.0 else cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))),
                                                    interpolation=cv2.INTER_AREA)
        gray = small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        if self.equalize:
            gray = cv2.equalizeHist(gray)
        min_side = max(16, int(min(gray.shape) * self.min_face_frac))
        with self._lock:
            found = self._classifier.detectMultiScale(gray, scaleFactor=self.scale_factor,
                                                      minNeighbors=self.min_neighbors,
                                                      minSize=(min_side, min_side))
        return [FaceBox(int(x / scale), int(y / scale), round(float(bw) / scale), round(float(bh) / scale))
                for x, y, bw, bh in np.asarray(found).reshape(-1, 4)]


def blur_region(image: np.ndarray, box: FaceBox, margin_frac: float = 0.25, cells: int = 6) -> None:
    """Mosaic then blur one box of `image` in place (the box grown by `margin_frac`, clipped to the image)."""
    import cv2

    h, w = image.shape[:2]
    mx, my = int(box.w * margin_frac), int(box.h * margin_frac)
    x0, y0 = max(0, box.x - mx), max(0, box.y - my)
    x1, y1 = min(w, box.x + box.w + mx), min(h, box.y + box.h + my)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return
    region = image[y0:y1, x0:x1]
    rw, rh = x1 - x0, y1 - y0
    cell = max(2, min(rw, rh) // cells)
    small = cv2.resize(region, (max(1, rw // cell), max(1, rh // cell)), interpolation=cv2.INTER_AREA)
    mosaic = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_NEAREST)
    k = cell | 1  # odd kernel about one mosaic cell wide
    image[y0:y1, x0:x1] = cv2.GaussianBlur(mosaic, (k, k), 0)
