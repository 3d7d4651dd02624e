"""The kiosk's image kernels: camera frame -> model input, generator output -> screen, capture quality, dedup.

This is the API; it runs the C++ module `edge._kernels` (private) or, with `ATELIER_KERNELS=ref` in the
environment, the NumPy references in `edge.kernels_ref`. If the extension cannot be loaded the references are
used, with a logged warning. `BACKEND` says which one is live ("native" or "ref").

Every kernel takes numpy arrays of any strides (slices, flipped views, ROIs) without copying them, releases
the GIL while it works, and raises TypeError (wrong type or dtype) or ValueError (shape, empty, size, range)
with a message that names the function and the argument. Luma is BT.601 with integer weights,
Y = (77 R + 150 G + 29 B + 128) >> 8.
"""

from __future__ import annotations

import logging
import os
from types import ModuleType

import numpy as np

from edge import kernels_ref
from edge.errors import UserError
from edge.kernels_ref import Exposure

__all__ = [
    "BACKEND",
    "Exposure",
    "dhash64",
    "exposure",
    "hamming_nearest",
    "postprocess",
    "preprocess_frame",
    "sharpness",
    "tile",
    "upscale",
]

logger = logging.getLogger(__name__)

BACKEND_ENV = "ATELIER_KERNELS"


def _load_backend() -> tuple[ModuleType, str]:
    choice = os.environ.get(BACKEND_ENV, "").strip().lower() or "native"
    if choice == "ref":
        return kernels_ref, "ref"
    if choice != "native":
        raise UserError(
            f"{BACKEND_ENV}={choice!r} is not a kernel backend: use 'native' (the C++ kernels, the default) "
            "or 'ref' (the NumPy references)"
        )
    try:
        from edge import _kernels
    except ImportError as exc:
        logger.warning(
            "edge._kernels could not be loaded (%s); using the slower NumPy reference kernels. "
            "Rebuild it with `pip install --no-build-isolation -e .`",
            exc,
        )
        return kernels_ref, "ref"
    return _kernels, "native"


_impl, BACKEND = _load_backend()


def preprocess_frame(
    frame: np.ndarray,
    size: int,
    *,
    crop: str = "center",
    out: str = "float",
    scale: float | None = None,
    zero_point: int | None = None,
) -> np.ndarray:
    """Turns a camera frame into a model input in one pass over the frame.

    Centre-square crop (or the full frame), exact area (box-filter) resize to `size` x `size` for any ratio
    (each output pixel is the area-weighted mean of the input pixels its footprint covers, fractional at the
    edges, like cv2.INTER_AREA but without rounding to uint8 in between), BGR -> RGB, x = mean / 127.5 - 1.

    Args:
        frame: H x W x 3 uint8 BGR, as OpenCV delivers it; any strides.
        size: output side in pixels, 1 to 4096 (larger than the crop is allowed: it upsamples).
        crop: "center" for the centred square of side min(H, W), "full" to squeeze the whole frame.
        out: "float" for float32 in [-1, 1], "int8" for the model input's quantization.
        scale: int8 only: the input tensor's scale.
        zero_point: int8 only: the input tensor's zero point; q = round(x / scale) + zero_point, clamped.

    Returns:
        size x size x 3 RGB, float32 or int8, C-contiguous.
    """
    return _impl.preprocess_frame(frame, size, crop=crop, out=out, scale=scale, zero_point=zero_point)


def postprocess(batch: np.ndarray, *, scale: float | None = None, zero_point: int | None = None) -> np.ndarray:
    """Turns generator output into displayable pixels: uint8 = round((x + 1) * 127.5), clamped.

    Args:
        batch: N x H x W x 3, float32 in [-1, 1] (NaN shows as 0), or int8 with its quantization
            (x = (q - zero_point) * scale; a TANH output is typically scale 1/128, zero point 0).
        scale: int8 only: the output tensor's scale.
        zero_point: int8 only: the output tensor's zero point.

    Returns:
        N x H x W x 3 uint8 RGB.
    """
    return _impl.postprocess(batch, scale=scale, zero_point=zero_point)


def tile(images: np.ndarray, cols: int, pad: int = 4, background: int | tuple[int, int, int] = 255) -> np.ndarray:
    """Lays images out on a grid, row-major, `pad` pixels around and between them.

    Args:
        images: N x H x W x 3 uint8.
        cols: columns of the grid (rows follow from N); cells past N stay background.
        pad: pixels of background around and between the images, 0 to 1024.
        background: grey level 0-255 or an (R, G, B) tuple.

    Returns:
        (rows H + (rows + 1) pad) x (cols W + (cols + 1) pad) x 3 uint8.
    """
    return _impl.tile(images, cols, pad, background)


def upscale(image: np.ndarray, factor: int, mode: str = "nearest") -> np.ndarray:
    """Enlarges an image by an integer factor for display.

    Args:
        image: H x W x 3 or H x W uint8.
        factor: 1 to 64.
        mode: "nearest" (blocks) or "bilinear" (half-pixel centres, edges clamped, rounded half up).

    Returns:
        (H factor) x (W factor) (x 3) uint8.
    """
    return _impl.upscale(image, factor, mode)


def sharpness(frame: np.ndarray) -> float:
    """Focus measure: the variance of the 4-neighbour Laplacian of luma over the interior pixels.

    Args:
        frame: H x W x 3 uint8 BGR or H x W uint8 gray.

    Returns:
        The (population) variance; 0.0 for a flat frame or one with fewer than 3 rows or columns. Blur lowers
        it; compare frames of one camera and size, not across sizes.
    """
    return _impl.sharpness(frame)


def exposure(frame: np.ndarray, *, dark_max: int = 16, bright_min: int = 235) -> Exposure:
    """Exposure summary on luma.

    Args:
        frame: H x W x 3 uint8 BGR or H x W uint8 gray.
        dark_max: luma at or below this counts as near-black (16: BT.601 video black).
        bright_min: luma at or above this counts as near-white (235: BT.601 video white).

    Returns:
        Exposure(mean_luma, dark_fraction, bright_fraction).
    """
    return Exposure(*_impl.exposure(frame, dark_max=dark_max, bright_min=bright_min))


def dhash64(frame: np.ndarray) -> int:
    """64-bit difference hash for near-duplicate detection.

    Luma is area-resized (exactly) to 9 x 8 cells; bit 63 - (8 r + c) is set when cell (r, c) is darker than
    cell (r, c + 1), so the hash reads row by row from the most significant bit.

    Args:
        frame: H x W x 3 uint8 BGR or H x W uint8 gray, any size.

    Returns:
        The hash, an int in [0, 2**64).
    """
    return _impl.dhash64(frame)


def hamming_nearest(h: int, table: np.ndarray) -> tuple[int, int]:
    """Finds the hash in `table` closest to `h` in Hamming distance.

    Args:
        h: a 64-bit hash (int or numpy integer in [0, 2**64)).
        table: 1-D uint64 array of hashes, not empty, any stride.

    Returns:
        (index, distance) of the first nearest entry.
    """
    return _impl.hamming_nearest(h, table)
