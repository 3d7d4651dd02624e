"""NumPy references of the kiosk kernels: the specification the C++ module `edge._kernels` is tested against.

Same names, signatures, results (within 1 LSB; most are bit-exact) and error messages as the compiled kernels.
`edge.kernels` runs these when `ATELIER_KERNELS=ref` or when the extension cannot be loaded. They favour being
obviously right over speed: exact integer arithmetic (float64 products of integers below 2^53 are exact).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, NamedTuple

import numpy as np

# BT.601 luma with integer weights that sum to 256: Y = (77 R + 150 G + 29 B + 128) >> 8 (csrc/kernels.hpp).
LUMA_R, LUMA_G, LUMA_B = 77, 150, 29
MAX_SIDE_PX = 65536  # any input or output image side
MAX_MODEL_SIZE_PX = 4096  # preprocess_frame's output side
MAX_OUTPUT_BYTES = 1 << 30  # any one output array
MAX_UPSCALE = 64
MAX_PAD_PX = 1024
FRAME_LAYOUT = "H x W x 3 (BGR)"
FRAME_OR_GRAY = "H x W x 3 (BGR) or H x W (gray)"


class Exposure(NamedTuple):
    """Exposure of a frame, on BT.601 luma in [0, 255]."""

    mean_luma: float  # mean luma
    dark_fraction: float  # share of pixels with luma <= dark_max
    bright_fraction: float  # share of pixels with luma >= bright_min


# --- argument checks (messages word for word those of csrc/module.cpp) ---


def _array(fn: str, name: str, obj: Any) -> np.ndarray:
    if not isinstance(obj, np.ndarray):
        raise TypeError(f"{fn}: {name} must be a numpy.ndarray, got {type(obj).__name__}")
    return obj


def _dtype(fn: str, name: str, a: np.ndarray, want: type, want_name: str) -> None:
    if a.dtype != np.dtype(want) or not a.dtype.isnative:
        raise TypeError(f"{fn}: {name} must be {want_name}, got {a.dtype}")


def _not_empty(fn: str, name: str, a: np.ndarray) -> None:
    if a.size == 0:
        raise ValueError(f"{fn}: {name} is empty (shape {a.shape})")


def _side_limit(fn: str, name: str, h: int, w: int) -> None:
    if h > MAX_SIDE_PX or w > MAX_SIDE_PX:
        raise ValueError(f"{fn}: {name} is {h} x {w} px; at most {MAX_SIDE_PX} px a side")


def _output_limit(fn: str, nbytes: int) -> None:
    if nbytes > MAX_OUTPUT_BYTES:
        raise ValueError(f"{fn}: the output would take {nbytes} bytes; at most {MAX_OUTPUT_BYTES}")


def _index(fn: str, name: str, obj: Any) -> int:
    if not isinstance(obj, bool):
        try:
            return operator.index(obj)
        except TypeError:
            pass
    raise TypeError(f"{fn}: {name} must be an int, got {type(obj).__name__}")


def _integer(fn: str, name: str, obj: Any, lo: int, hi: int) -> int:
    v = _index(fn, name, obj)
    if not lo <= v <= hi:
        raise ValueError(f"{fn}: {name} must be in [{lo}, {hi}], got {v}")
    return v


def _positive_real(fn: str, name: str, obj: Any) -> float:
    if isinstance(obj, bool) or not isinstance(obj, numbers.Real):
        raise TypeError(f"{fn}: {name} must be a real number, got {type(obj).__name__}")
    v = float(obj)
    if not math.isfinite(v) or v <= 0.0:
        raise ValueError(f"{fn}: {name} must be a finite number > 0, got {obj!r}")
    return v


def _choice(fn: str, name: str, obj: Any, a: str, b: str) -> bool:
    if isinstance(obj, str) and obj in (a, b):
        return obj == a
    raise ValueError(f"{fn}: {name} must be '{a}' or '{b}', got {obj!r}")


def _image(fn: str, name: str, obj: Any, gray: bool, layout: str) -> np.ndarray:
    a = _array(fn, name, obj)
    _dtype(fn, name, a, np.uint8, "uint8")
    color = a.ndim == 3 and a.shape[2] == 3
    if not color and not (gray and a.ndim == 2):
        raise ValueError(f"{fn}: {name} must be {layout}, got shape {a.shape}")
    _not_empty(fn, name, a)
    _side_limit(fn, name, a.shape[0], a.shape[1])
    return a


def _batch(fn: str, name: str, a: np.ndarray) -> None:
    if a.ndim != 4 or a.shape[3] != 3:
        raise ValueError(f"{fn}: {name} must be N x H x W x 3, got shape {a.shape}")
    _not_empty(fn, name, a)
    _side_limit(fn, name, a.shape[1], a.shape[2])


# --- shared maths ---


def area_weights(src_len: int, dst_len: int) -> np.ndarray:
    """Exact area-resize weights along one axis, as a dst_len x src_len matrix of integers (float64).

    Output pixel i covers source coordinates [i L / n, (i + 1) L / n); scaled by n it is [i L, (i + 1) L) and
    source pixel j is [j n, (j + 1) n), so each weight is an integer overlap and each row sums to L = src_len.

    Args:
        src_len: source length in pixels.
        dst_len: output length in pixels.

    Returns:
        The weights; output = weights @ source / src_len.
    """
    i = np.arange(dst_len, dtype=np.int64)[:, None]
    j = np.arange(src_len, dtype=np.int64)[None, :]
    w = np.minimum((i + 1) * src_len, (j + 1) * dst_len) - np.maximum(i * src_len, j * dst_len)
    return np.clip(w, 0, None).astype(np.float64)


def luma(frame: np.ndarray) -> np.ndarray:
    """BT.601 integer luma, the one formula every kernel uses.

    Args:
        frame: H x W x 3 BGR or H x W gray, uint8.

    Returns:
        H x W int64 in [0, 255]: (77 R + 150 G + 29 B + 128) >> 8, or the gray values themselves.
    """
    if frame.ndim == 2:
        return frame.astype(np.int64)
    f = frame.astype(np.int64)
    return (LUMA_R * f[..., 2] + LUMA_G * f[..., 1] + LUMA_B * f[..., 0] + 128) >> 8


def _area_sums(image: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Exact integer numerators (float64) of the area resize of an H x W (x C) image (/ H W: means)."""
    wy, wx = area_weights(image.shape[0], out_h), area_weights(image.shape[1], out_w)
    x = image.astype(np.float64)
    if x.ndim == 2:
        return wy @ x @ wx.T
    h, w, c = x.shape
    t = (wy @ x.reshape(h, w * c)).reshape(out_h, w, c)  # vertical pass: out_h x W x C
    return wx @ t  # horizontal pass, broadcast over output rows: out_h x out_w x C


# --- kernels ---


def preprocess_frame(
    frame: np.ndarray,
    size: int,
    *,
    crop: str = "center",
    out: str = "float",
    scale: float | None = None,
    zero_point: int | None = None,
) -> np.ndarray:
    """Camera frame -> model input; see edge.kernels.preprocess_frame."""
    fn = "preprocess_frame"
    f = _image(fn, "frame", frame, False, FRAME_LAYOUT)
    n = _integer(fn, "size", size, 1, MAX_MODEL_SIZE_PX)
    center = _choice(fn, "crop", crop, "center", "full")
    as_float = _choice(fn, "out", out, "float", "int8")
    if as_float:
        if scale is not None or zero_point is not None:
            raise ValueError(f"{fn}: scale and zero_point apply only to out='int8'")
    else:
        if scale is None or zero_point is None:
            raise ValueError(f"{fn}: out='int8' needs scale and zero_point (the model input's quantization)")
        s = _positive_real(fn, "scale", scale)
        zp = _integer(fn, "zero_point", zero_point, -128, 127)
    h, w = f.shape[:2]
    if center:
        side = min(h, w)
        y0, x0 = (h - side) // 2, (w - side) // 2
        f = f[y0 : y0 + side, x0 : x0 + side]
        h = w = side
    num = _area_sums(f, n, n)[..., ::-1]  # BGR -> RGB
    # v / 127.5 - 1 with v = num / (h w), the very double expression the C++ evaluates.
    x = num * (1.0 / (float(h * w) * 127.5)) - 1.0
    if as_float:
        return np.ascontiguousarray(x, dtype=np.float32)
    t = np.clip(x / s, -1024.0, 1024.0)
    return np.clip(np.rint(t) + zp, -128, 127).astype(np.int8)


def postprocess(batch: np.ndarray, *, scale: float | None = None, zero_point: int | None = None) -> np.ndarray:
    """Generator output -> uint8 RGB; see edge.kernels.postprocess."""
    fn = "postprocess"
    a = _array(fn, "batch", batch)
    is_int8 = a.dtype == np.int8
    if not is_int8 and not (a.dtype == np.float32 and a.dtype.isnative):
        raise TypeError(f"{fn}: batch must be int8 or float32, got {a.dtype}")
    _batch(fn, "batch", a)
    _output_limit(fn, a.size)
    if is_int8:
        if scale is None or zero_point is None:
            raise ValueError(f"{fn}: an int8 batch needs scale and zero_point (the output tensor's quantization)")
        s = _positive_real(fn, "scale", scale)
        zp = _integer(fn, "zero_point", zero_point, -128, 127)
        v = ((a.astype(np.float64) - zp) * s + 1.0) * 127.5
    else:
        if scale is not None or zero_point is not None:
            raise ValueError(f"{fn}: scale and zero_point apply only to int8 batches")
        v = (a + np.float32(1.0)) * np.float32(127.5)  # float32 arithmetic, as the C++
        v = np.where(np.isnan(v), np.float32(0.0), v)
    return np.rint(np.clip(v, 0, 255)).astype(np.uint8)


def tile(images: np.ndarray, cols: int, pad: int = 4, background: int | tuple[int, int, int] = 255) -> np.ndarray:
    """N images -> one grid image; see edge.kernels.tile."""
    fn = "tile"
    a = _array(fn, "images", images)
    _dtype(fn, "images", a, np.uint8, "uint8")
    _batch(fn, "images", a)
    c = _integer(fn, "cols", cols, 1, MAX_SIDE_PX)
    p = _integer(fn, "pad", pad, 0, MAX_PAD_PX)
    if isinstance(background, tuple | list):
        if len(background) != 3:
            raise ValueError(f"{fn}: background must be an int or an (R, G, B) tuple, got {background!r}")
        bg = [_integer(fn, "background", v, 0, 255) for v in background]
    elif hasattr(type(background), "__index__") and not isinstance(background, bool):
        bg = [_integer(fn, "background", background, 0, 255)] * 3
    else:
        raise TypeError(f"{fn}: background must be an int or an (R, G, B) tuple, got {type(background).__name__}")
    n, h, w = a.shape[:3]
    rows = -(-n // c)
    if rows > MAX_SIDE_PX:
        raise ValueError(f"{fn}: the grid would have {rows} rows of images; at most {MAX_SIDE_PX}")
    out_h, out_w = rows * h + (rows + 1) * p, c * w + (c + 1) * p
    _side_limit(fn, "the grid", out_h, out_w)
    _output_limit(fn, out_h * out_w * 3)
    grid = np.empty((out_h, out_w, 3), np.uint8)
    grid[:] = np.array(bg, np.uint8)
    for i in range(n):
        top, left = p + (i // c) * (h + p), p + (i % c) * (w + p)
        grid[top : top + h, left : left + w] = a[i]
    return grid


def _bilinear_taps(length: int, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    # Output d samples source position (d + 0.5) / f - 0.5: in units of 1 / (2 f), 2 d + 1 - f, clamped.
    d = np.arange(length * factor, dtype=np.int64)
    pos = np.clip(2 * d + 1 - factor, 0, 2 * factor * (length - 1))
    j0, frac = pos // (2 * factor), pos % (2 * factor)
    return j0, np.minimum(j0 + 1, length - 1), 2 * factor - frac, frac


def upscale(image: np.ndarray, factor: int, mode: str = "nearest") -> np.ndarray:
    """Integer-factor enlargement for display; see edge.kernels.upscale."""
    fn = "upscale"
    im = _image(fn, "image", image, True, "H x W x 3 (RGB) or H x W (gray)")
    f = _integer(fn, "factor", factor, 1, MAX_UPSCALE)
    nearest = _choice(fn, "mode", mode, "nearest", "bilinear")
    h, w = im.shape[:2]
    _side_limit(fn, "the output", h * f, w * f)
    _output_limit(fn, h * f * w * f * (3 if im.ndim == 3 else 1))
    if nearest:
        return np.repeat(np.repeat(im, f, axis=0), f, axis=1)
    y0, y1, wy0, wy1 = _bilinear_taps(h, f)
    x0, x1, wx0, wx1 = _bilinear_taps(w, f)
    x = im.astype(np.int64)
    if x.ndim == 2:
        x = x[..., None]
    rows = x[y0] * wy0[:, None, None] + x[y1] * wy1[:, None, None]
    num = rows[:, x0] * wx0[None, :, None] + rows[:, x1] * wx1[None, :, None]
    out = ((num + 2 * f * f) // (4 * f * f)).astype(np.uint8)  # round half up, exact
    return out if im.ndim == 3 else out[..., 0]


def sharpness(frame: np.ndarray) -> float:
    """Variance of the Laplacian of luma; see edge.kernels.sharpness."""
    f = _image("sharpness", "frame", frame, True, FRAME_OR_GRAY)
    if f.shape[0] < 3 or f.shape[1] < 3:
        return 0.0
    y = luma(f)
    lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4 * y[1:-1, 1:-1]
    n, s1, s2 = lap.size, int(lap.sum()), int((lap * lap).sum())
    return (n * s2 - s1 * s1) / (n * n)


def exposure(frame: np.ndarray, *, dark_max: int = 16, bright_min: int = 235) -> Exposure:
    """Mean luma and shares of near-black/near-white pixels; see edge.kernels.exposure."""
    fn = "exposure"
    f = _image(fn, "frame", frame, True, FRAME_OR_GRAY)
    dark = _integer(fn, "dark_max", dark_max, 0, 255)
    bright = _integer(fn, "bright_min", bright_min, 0, 255)
    y = luma(f)
    n = float(f.shape[0]) * float(f.shape[1])
    return Exposure(int(y.sum()) / n, int(np.count_nonzero(y <= dark)) / n, int(np.count_nonzero(y >= bright)) / n)


def dhash64(frame: np.ndarray) -> int:
    """64-bit difference hash; see edge.kernels.dhash64."""
    f = _image("dhash64", "frame", frame, True, FRAME_OR_GRAY)
    cells = _area_sums(luma(f), 8, 9)  # exact numerators over one shared denominator
    bits = (cells[:, :-1] < cells[:, 1:]).ravel()
    return sum(1 << (63 - int(i)) for i in np.flatnonzero(bits))


def hamming_nearest(h: int, table: np.ndarray) -> tuple[int, int]:
    """Nearest hash by Hamming distance; see edge.kernels.hamming_nearest."""
    fn = "hamming_nearest"
    key = _index(fn, "h", h)
    if not 0 <= key < 1 << 64:
        raise ValueError(f"{fn}: h must be in [0, 2**64 - 1], got {key}")
    a = _array(fn, "table", table)
    _dtype(fn, "table", a, np.uint64, "uint64")
    if a.ndim != 1:
        raise ValueError(f"{fn}: table must be 1-D, got shape {a.shape}")
    _not_empty(fn, "table", a)
    x = np.ascontiguousarray(a ^ np.uint64(key))
    d = np.unpackbits(x.view(np.uint8)).reshape(-1, 64).sum(axis=1)  # popcount, numpy 1.26 included
    i = int(np.argmin(d))
    return i, int(d[i])
