"""Every rejected input of every kernel: the C++ module and the NumPy reference raise the same exception type
with the same message (word for word), and nothing is read or written out of bounds on the way.

Huge inputs are zero-stride views (np.broadcast_to), so the size checks are exercised without the memory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from edge import _kernels as native
from edge import kernels_ref as ref

U8 = np.uint8
FRAME = np.zeros((6, 8, 3), U8)
BATCH_F = np.zeros((2, 4, 4, 3), np.float32)
BATCH_Q = np.zeros((2, 4, 4, 3), np.int8)
TABLE = np.arange(4, dtype=np.uint64)


def _huge(shape: tuple[int, ...], dtype: type = U8) -> np.ndarray:
    return np.broadcast_to(np.zeros((1,) * len(shape), dtype), shape)


# (label, call on a kernel module, exception type, exact message)
Case = tuple[str, Callable[[ModuleType], Any], type[Exception], str]
P = "preprocess_frame: "
# fmt: off
CASES: list[Case] = [
    # preprocess_frame
    ("pp-list", lambda k: k.preprocess_frame([[0]], 8), TypeError,
     P + "frame must be a numpy.ndarray, got list"),
    ("pp-float", lambda k: k.preprocess_frame(FRAME.astype(np.float32), 8), TypeError,
     P + "frame must be uint8, got float32"),
    ("pp-2d", lambda k: k.preprocess_frame(np.zeros((4, 5), U8), 8), ValueError,
     P + "frame must be H x W x 3 (BGR), got shape (4, 5)"),
    ("pp-4ch", lambda k: k.preprocess_frame(np.zeros((4, 5, 4), U8), 8), ValueError,
     P + "frame must be H x W x 3 (BGR), got shape (4, 5, 4)"),
    ("pp-1d", lambda k: k.preprocess_frame(np.zeros(3, U8), 8), ValueError,
     P + "frame must be H x W x 3 (BGR), got shape (3,)"),
    ("pp-empty", lambda k: k.preprocess_frame(np.zeros((0, 5, 3), U8), 8), ValueError,
     P + "frame is empty (shape (0, 5, 3))"),
    ("pp-huge", lambda k: k.preprocess_frame(_huge((70000, 2, 3)), 8), ValueError,
     P + "frame is 70000 x 2 px; at most 65536 px a side"),
    ("pp-size0", lambda k: k.preprocess_frame(FRAME, 0), ValueError, P + "size must be in [1, 4096], got 0"),
    ("pp-size-big", lambda k: k.preprocess_frame(FRAME, 4097), ValueError,
     P + "size must be in [1, 4096], got 4097"),
    ("pp-size-overflow", lambda k: k.preprocess_frame(FRAME, 2**70), ValueError,
     P + f"size must be in [1, 4096], got {2**70}"),
    ("pp-size-neg-overflow", lambda k: k.preprocess_frame(FRAME, -(2**64)), ValueError,
     P + f"size must be in [1, 4096], got {-(2**64)}"),
    ("pp-size-float", lambda k: k.preprocess_frame(FRAME, 8.0), TypeError,
     P + "size must be an int, got float"),
    ("pp-size-bool", lambda k: k.preprocess_frame(FRAME, True), TypeError,
     P + "size must be an int, got bool"),
    ("pp-size-str", lambda k: k.preprocess_frame(FRAME, "8"), TypeError, P + "size must be an int, got str"),
    ("pp-crop", lambda k: k.preprocess_frame(FRAME, 8, crop="middle"), ValueError,
     P + "crop must be 'center' or 'full', got 'middle'"),
    ("pp-crop-none", lambda k: k.preprocess_frame(FRAME, 8, crop=None), ValueError,
     P + "crop must be 'center' or 'full', got None"),
    ("pp-out", lambda k: k.preprocess_frame(FRAME, 8, out="uint8"), ValueError,
     P + "out must be 'float' or 'int8', got 'uint8'"),
    ("pp-int8-noscale", lambda k: k.preprocess_frame(FRAME, 8, out="int8"), ValueError,
     P + "out='int8' needs scale and zero_point (the model input's quantization)"),
    ("pp-int8-nozp", lambda k: k.preprocess_frame(FRAME, 8, out="int8", scale=0.1), ValueError,
     P + "out='int8' needs scale and zero_point (the model input's quantization)"),
    ("pp-float-scale", lambda k: k.preprocess_frame(FRAME, 8, scale=0.1), ValueError,
     P + "scale and zero_point apply only to out='int8'"),
    ("pp-scale0", lambda k: k.preprocess_frame(FRAME, 8, out="int8", scale=0, zero_point=0), ValueError,
     P + "scale must be a finite number > 0, got 0"),
    ("pp-scale-nan", lambda k: k.preprocess_frame(FRAME, 8, out="int8", scale=float("nan"), zero_point=0),
     ValueError, P + "scale must be a finite number > 0, got nan"),
    ("pp-scale-inf", lambda k: k.preprocess_frame(FRAME, 8, out="int8", scale=float("inf"), zero_point=0),
     ValueError, P + "scale must be a finite number > 0, got inf"),
    ("pp-scale-str", lambda k: k.preprocess_frame(FRAME, 8, out="int8", scale="0.1", zero_point=0), TypeError,
     P + "scale must be a real number, got str"),
    ("pp-scale-bool", lambda k: k.preprocess_frame(FRAME, 8, out="int8", scale=True, zero_point=0), TypeError,
     P + "scale must be a real number, got bool"),
    ("pp-zp-range", lambda k: k.preprocess_frame(FRAME, 8, out="int8", scale=0.1, zero_point=128), ValueError,
     P + "zero_point must be in [-128, 127], got 128"),
    ("pp-zp-float", lambda k: k.preprocess_frame(FRAME, 8, out="int8", scale=0.1, zero_point=0.5), TypeError,
     P + "zero_point must be an int, got float"),
    # postprocess
    ("post-list", lambda k: k.postprocess([0.0]), TypeError,
     "postprocess: batch must be a numpy.ndarray, got list"),
    ("post-uint8", lambda k: k.postprocess(np.zeros((1, 2, 2, 3), U8)), TypeError,
     "postprocess: batch must be int8 or float32, got uint8"),
    ("post-float64", lambda k: k.postprocess(np.zeros((1, 2, 2, 3))), TypeError,
     "postprocess: batch must be int8 or float32, got float64"),
    ("post-bigendian", lambda k: k.postprocess(np.zeros((1, 2, 2, 3), ">f4")), TypeError,
     "postprocess: batch must be int8 or float32, got >f4"),
    ("post-3d", lambda k: k.postprocess(np.zeros((5, 5, 3), np.float32)), ValueError,
     "postprocess: batch must be N x H x W x 3, got shape (5, 5, 3)"),
    ("post-4ch", lambda k: k.postprocess(np.zeros((1, 5, 5, 4), np.float32)), ValueError,
     "postprocess: batch must be N x H x W x 3, got shape (1, 5, 5, 4)"),
    ("post-empty", lambda k: k.postprocess(np.zeros((0, 4, 4, 3), np.float32)), ValueError,
     "postprocess: batch is empty (shape (0, 4, 4, 3))"),
    ("post-huge-side", lambda k: k.postprocess(_huge((1, 4, 65537, 3), np.float32)), ValueError,
     "postprocess: batch is 4 x 65537 px; at most 65536 px a side"),
    ("post-huge-output", lambda k: k.postprocess(_huge((100000, 64, 64, 3), np.float32)), ValueError,
     "postprocess: the output would take 1228800000 bytes; at most 1073741824"),
    ("post-int8-noscale", lambda k: k.postprocess(BATCH_Q), ValueError,
     "postprocess: an int8 batch needs scale and zero_point (the output tensor's quantization)"),
    ("post-float-scale", lambda k: k.postprocess(BATCH_F, scale=1 / 128, zero_point=0), ValueError,
     "postprocess: scale and zero_point apply only to int8 batches"),
    ("post-scale-neg", lambda k: k.postprocess(BATCH_Q, scale=-0.5, zero_point=0), ValueError,
     "postprocess: scale must be a finite number > 0, got -0.5"),
    ("post-zp-range", lambda k: k.postprocess(BATCH_Q, scale=0.5, zero_point=-129), ValueError,
     "postprocess: zero_point must be in [-128, 127], got -129"),
    # tile
    ("tile-float", lambda k: k.tile(BATCH_F, 2), TypeError, "tile: images must be uint8, got float32"),
    ("tile-3d", lambda k: k.tile(FRAME, 2), ValueError,
     "tile: images must be N x H x W x 3, got shape (6, 8, 3)"),
    ("tile-empty", lambda k: k.tile(np.zeros((0, 2, 2, 3), U8), 2), ValueError,
     "tile: images is empty (shape (0, 2, 2, 3))"),
    ("tile-cols0", lambda k: k.tile(np.zeros((3, 2, 2, 3), U8), 0), ValueError,
     "tile: cols must be in [1, 65536], got 0"),
    ("tile-cols-float", lambda k: k.tile(np.zeros((3, 2, 2, 3), U8), 2.5), TypeError,
     "tile: cols must be an int, got float"),
    ("tile-pad-neg", lambda k: k.tile(np.zeros((3, 2, 2, 3), U8), 2, -1), ValueError,
     "tile: pad must be in [0, 1024], got -1"),
    ("tile-bg-len", lambda k: k.tile(np.zeros((3, 2, 2, 3), U8), 2, 1, (1, 2)), ValueError,
     "tile: background must be an int or an (R, G, B) tuple, got (1, 2)"),
    ("tile-bg-str", lambda k: k.tile(np.zeros((3, 2, 2, 3), U8), 2, 1, "white"), TypeError,
     "tile: background must be an int or an (R, G, B) tuple, got str"),
    ("tile-bg-range", lambda k: k.tile(np.zeros((3, 2, 2, 3), U8), 2, 1, [0, 0, 300]), ValueError,
     "tile: background must be in [0, 255], got 300"),
    ("tile-bg-float", lambda k: k.tile(np.zeros((3, 2, 2, 3), U8), 2, 1, (0, 0.5, 0)), TypeError,
     "tile: background must be an int, got float"),
    ("tile-wide", lambda k: k.tile(_huge((3, 2, 64, 3)), 2000, 0), ValueError,
     "tile: the grid is 2 x 128000 px; at most 65536 px a side"),
    ("tile-rows", lambda k: k.tile(_huge((2**61, 1, 1, 3)), 1, 1024), ValueError,
     f"tile: the grid would have {2**61} rows of images; at most 65536"),
    ("tile-output", lambda k: k.tile(_huge((400, 3000, 3000, 3)), 20, 0), ValueError,
     "tile: the output would take 10800000000 bytes; at most 1073741824"),
    # upscale
    ("up-4ch", lambda k: k.upscale(np.zeros((4, 4, 4), U8), 2), ValueError,
     "upscale: image must be H x W x 3 (RGB) or H x W (gray), got shape (4, 4, 4)"),
    ("up-int16", lambda k: k.upscale(np.zeros((4, 4, 3), np.int16), 2), TypeError,
     "upscale: image must be uint8, got int16"),
    ("up-factor0", lambda k: k.upscale(FRAME, 0), ValueError, "upscale: factor must be in [1, 64], got 0"),
    ("up-factor65", lambda k: k.upscale(FRAME, 65), ValueError, "upscale: factor must be in [1, 64], got 65"),
    ("up-mode", lambda k: k.upscale(FRAME, 2, "cubic"), ValueError,
     "upscale: mode must be 'nearest' or 'bilinear', got 'cubic'"),
    ("up-side", lambda k: k.upscale(_huge((2000, 20, 3)), 64), ValueError,
     "upscale: the output is 128000 x 1280 px; at most 65536 px a side"),
    ("up-output", lambda k: k.upscale(_huge((4096, 4096, 3)), 16), ValueError,
     "upscale: the output would take 12884901888 bytes; at most 1073741824"),
    # sharpness / exposure / dhash64
    ("sharp-tuple", lambda k: k.sharpness((1, 2)), TypeError,
     "sharpness: frame must be a numpy.ndarray, got tuple"),
    ("sharp-2ch", lambda k: k.sharpness(np.zeros((3, 3, 2), U8)), ValueError,
     "sharpness: frame must be H x W x 3 (BGR) or H x W (gray), got shape (3, 3, 2)"),
    ("sharp-empty", lambda k: k.sharpness(np.zeros((0, 0), U8)), ValueError,
     "sharpness: frame is empty (shape (0, 0))"),
    ("exp-dtype", lambda k: k.exposure(np.zeros((3, 3), np.int8)), TypeError,
     "exposure: frame must be uint8, got int8"),
    ("exp-dark", lambda k: k.exposure(FRAME, dark_max=256), ValueError,
     "exposure: dark_max must be in [0, 255], got 256"),
    ("exp-bright", lambda k: k.exposure(FRAME, bright_min=-1), ValueError,
     "exposure: bright_min must be in [0, 255], got -1"),
    ("exp-dark-float", lambda k: k.exposure(FRAME, dark_max=16.0), TypeError,
     "exposure: dark_max must be an int, got float"),
    ("dhash-4d", lambda k: k.dhash64(np.zeros((1, 2, 2, 3), U8)), ValueError,
     "dhash64: frame must be H x W x 3 (BGR) or H x W (gray), got shape (1, 2, 2, 3)"),
    ("dhash-huge", lambda k: k.dhash64(_huge((3, 65537))), ValueError,
     "dhash64: frame is 3 x 65537 px; at most 65536 px a side"),
    # hamming_nearest
    ("ham-neg", lambda k: k.hamming_nearest(-1, TABLE), ValueError,
     "hamming_nearest: h must be in [0, 2**64 - 1], got -1"),
    ("ham-big", lambda k: k.hamming_nearest(2**64, TABLE), ValueError,
     f"hamming_nearest: h must be in [0, 2**64 - 1], got {2**64}"),
    ("ham-float", lambda k: k.hamming_nearest(1.0, TABLE), TypeError,
     "hamming_nearest: h must be an int, got float"),
    ("ham-int64", lambda k: k.hamming_nearest(1, TABLE.astype(np.int64)), TypeError,
     "hamming_nearest: table must be uint64, got int64"),
    ("ham-2d", lambda k: k.hamming_nearest(1, TABLE.reshape(2, 2)), ValueError,
     "hamming_nearest: table must be 1-D, got shape (2, 2)"),
    ("ham-empty", lambda k: k.hamming_nearest(1, TABLE[:0]), ValueError,
     "hamming_nearest: table is empty (shape (0,))"),
    ("ham-list", lambda k: k.hamming_nearest(1, [1, 2]), TypeError,
     "hamming_nearest: table must be a numpy.ndarray, got list"),
]
# fmt: on


@pytest.mark.parametrize("impl", [native, ref], ids=["native", "ref"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rejects_with_message(impl: ModuleType, case: Case) -> None:
    _, call, exc_type, message = case
    with pytest.raises(exc_type, match=f"^{re.escape(message)}$"):
        call(impl)


def test_accepts_numpy_integers_and_floats_where_ints_and_reals_are_asked() -> None:
    q = native.preprocess_frame(FRAME, np.int64(4), out="int8", scale=np.float32(0.5), zero_point=np.int8(-3))
    assert q.shape == (4, 4, 3) and q.dtype == np.int8
    assert native.hamming_nearest(np.uint64(2**64 - 1), np.array([2**64 - 1], np.uint64)) == (0, 0)


def test_size_limits_are_the_same_in_both() -> None:
    assert native.MAX_SIDE_PX == ref.MAX_SIDE_PX
    assert native.MAX_MODEL_SIZE_PX == ref.MAX_MODEL_SIZE_PX
    assert native.MAX_OUTPUT_BYTES == ref.MAX_OUTPUT_BYTES
