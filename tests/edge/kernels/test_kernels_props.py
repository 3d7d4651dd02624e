"""Property tests: the C++ kernels (edge._kernels) equal their NumPy references (edge.kernels_ref).

Random shapes (odd sizes, 1 x N frames, outputs larger than the crop), all-0 / all-255 / random / gradient
content, and every memory layout numpy can hand over: packed, stepped slices, flipped views, planar (channel
stride > 1) and Fortran order. uint8/int8 outputs may differ by 1 LSB and floats by 1e-5; most agree exactly.
tests/edge/kernels/test_kernels_sanitize.py runs this file again against an ASan + UBSan build of the extension
(ATELIER_HYPOTHESIS_PROFILE=sanitize keeps that run short).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge import _kernels as native
from edge import kernels_ref as ref

settings.register_profile("sanitize", max_examples=15)
if os.environ.get("ATELIER_HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["ATELIER_HYPOTHESIS_PROFILE"])

PROPS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
LAYOUTS = ("packed", "stepped", "flipped", "planar", "fortran")


def _values(kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    if kind == "zeros":
        return np.zeros(shape, np.uint8)
    if kind == "full":
        return np.full(shape, 255, np.uint8)
    if kind == "gradient":
        ramp = np.linspace(0, 255, shape[1], dtype=np.float64).astype(np.uint8)
        return np.broadcast_to(ramp.reshape((1, shape[1]) + (1,) * (len(shape) - 2)), shape).copy()
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _view(values: np.ndarray, layout: str) -> np.ndarray:
    """The same values, laid out in memory as `layout` says (never packed unless asked)."""
    shape = values.shape
    if layout == "packed":
        out = np.empty(shape, values.dtype)
    elif layout == "stepped":  # every 2nd row, every 3rd column, from an offset: strides 2x and 3x
        big = np.empty((shape[0] * 2 + 1, shape[1] * 3 + 2, *shape[2:]), values.dtype)
        out = big[1::2, 2::3][: shape[0], : shape[1]]
    elif layout == "flipped":  # negative row and column strides
        out = np.empty(shape, values.dtype)[::-1, ::-1]
    elif layout == "planar" and len(shape) == 3:  # channel stride H * W, column stride 1
        out = np.empty((shape[2], shape[0], shape[1]), values.dtype).transpose(1, 2, 0)
    else:
        out = np.asfortranarray(np.empty(shape, values.dtype))
    out[...] = values
    return out


@st.composite
def images(draw: st.DrawFn, *, gray: bool = False, max_side: int = 41) -> np.ndarray:
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    channels = draw(st.sampled_from((3, None) if gray else (3,)))
    shape = (h, w) if channels is None else (h, w, channels)
    kind = draw(st.sampled_from(("random", "random", "zeros", "full", "gradient")))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return _view(_values(kind, shape, rng), draw(st.sampled_from(LAYOUTS)))


def _assert_close_ints(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == want.dtype
    assert got.flags.c_contiguous
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    assert diff.max(initial=0) <= 1, f"{int((diff > 1).sum())} values differ by more than 1 LSB"


@PROPS
@given(frame=images(), size=st.integers(1, 48), crop=st.sampled_from(("center", "full")))
def test_preprocess_float_matches_reference(frame: np.ndarray, size: int, crop: str) -> None:
    got = native.preprocess_frame(frame, size, crop=crop)
    want = ref.preprocess_frame(frame, size, crop=crop)
    assert got.shape == want.shape == (size, size, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    assert np.all((got >= -1.0) & (got <= 1.0))


@PROPS
@given(
    frame=images(),
    size=st.integers(1, 48),
    crop=st.sampled_from(("center", "full")),
    scale=st.sampled_from((1 / 128, 1 / 255, 0.0078125, 0.02, 1.0, 1e-6)),
    zero_point=st.integers(-128, 127),
)
def test_preprocess_int8_matches_reference(
    frame: np.ndarray, size: int, crop: str, scale: float, zero_point: int
) -> None:
    got = native.preprocess_frame(frame, size, crop=crop, out="int8", scale=scale, zero_point=zero_point)
    want = ref.preprocess_frame(frame, size, crop=crop, out="int8", scale=scale, zero_point=zero_point)
    _assert_close_ints(got, want)


@PROPS
@given(
    n=st.integers(1, 4),
    h=st.integers(1, 17),
    w=st.integers(1, 17),
    layout=st.sampled_from(("packed", "stepped", "flipped", "fortran")),
    seed=st.integers(0, 2**32 - 1),
    special=st.sampled_from((None, np.nan, np.inf, -np.inf, 1.0, -1.0, 0.0)),
)
def test_postprocess_float_matches_reference(
    n: int, h: int, w: int, layout: str, seed: int, special: float | None
) -> None:
    rng = np.random.default_rng(seed)
    values = (rng.standard_normal((n, h, w, 3)) * 0.8).astype(np.float32)
    if special is not None:
        values[rng.random(values.shape) < 0.2] = special
    batch = _view(values, layout)
    _assert_close_ints(native.postprocess(batch), ref.postprocess(batch))


@PROPS
@given(
    n=st.integers(1, 4),
    h=st.integers(1, 17),
    w=st.integers(1, 17),
    layout=st.sampled_from(("packed", "stepped", "flipped", "fortran")),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from((1 / 128, 0.01, 0.5, 1e-4)),
    zero_point=st.integers(-128, 127),
)
def test_postprocess_int8_matches_reference(
    n: int, h: int, w: int, layout: str, seed: int, scale: float, zero_point: int
) -> None:
    values = np.random.default_rng(seed).integers(-128, 128, (n, h, w, 3)).astype(np.int8)
    batch = _view(values, layout)
    got = native.postprocess(batch, scale=scale, zero_point=zero_point)
    _assert_close_ints(got, ref.postprocess(batch, scale=scale, zero_point=zero_point))


@PROPS
@given(
    n=st.integers(1, 7),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    cols=st.integers(1, 8),
    pad=st.integers(0, 5),
    background=st.one_of(st.integers(0, 255), st.tuples(*[st.integers(0, 255)] * 3)),
    layout=st.sampled_from(("packed", "stepped", "flipped", "fortran")),
    seed=st.integers(0, 2**32 - 1),
)
def test_tile_matches_reference(
    n: int, h: int, w: int, cols: int, pad: int, background: int | tuple, layout: str, seed: int
) -> None:
    images_ = _view(np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8), layout)
    got = native.tile(images_, cols, pad, background)
    np.testing.assert_array_equal(got, ref.tile(images_, cols, pad, background))


@PROPS
@given(
    image=images(gray=True, max_side=13),
    factor=st.integers(1, 6),
    mode=st.sampled_from(("nearest", "bilinear")),
)
def test_upscale_matches_reference(image: np.ndarray, factor: int, mode: str) -> None:
    _assert_close_ints(native.upscale(image, factor, mode), ref.upscale(image, factor, mode))


@PROPS
@given(frame=images(gray=True))
def test_quality_metrics_match_reference(frame: np.ndarray) -> None:
    assert native.sharpness(frame) == pytest.approx(ref.sharpness(frame), rel=1e-9, abs=1e-9)
    got, want = native.exposure(frame), ref.exposure(frame)
    assert got == pytest.approx(tuple(want), rel=1e-12, abs=1e-12)


@PROPS
@given(frame=images(gray=True), dark_max=st.integers(0, 255), bright_min=st.integers(0, 255))
def test_exposure_thresholds_match_reference(frame: np.ndarray, dark_max: int, bright_min: int) -> None:
    got = native.exposure(frame, dark_max=dark_max, bright_min=bright_min)
    want = ref.exposure(frame, dark_max=dark_max, bright_min=bright_min)
    assert got == pytest.approx(tuple(want), rel=1e-12, abs=1e-12)


@PROPS
@given(frame=images(gray=True, max_side=60))
def test_dhash_matches_reference(frame: np.ndarray) -> None:
    got = native.dhash64(frame)
    assert isinstance(got, int) and 0 <= got < 2**64
    assert got == ref.dhash64(frame)


@PROPS
@given(
    h=st.integers(0, 2**64 - 1),
    values=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=40),
    step=st.sampled_from((1, 2, -1, -3)),
)
def test_hamming_nearest_matches_reference(h: int, values: list[int], step: int) -> None:
    big = np.zeros(len(values) * abs(step), np.uint64)
    table = big[:: abs(step)] if step > 0 else big[::step]
    table[:] = values
    assert native.hamming_nearest(h, table) == ref.hamming_nearest(h, table)
    assert native.hamming_nearest(np.uint64(h), table) == ref.hamming_nearest(h, table)


@pytest.mark.parametrize("shape", [(1, 57, 3), (57, 1, 3), (1, 1, 3), (2, 3, 3), (33, 64, 3)])
@pytest.mark.parametrize("kind", ["zeros", "full", "random"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_edge_shapes_match_reference(shape: tuple[int, int, int], kind: str, layout: str) -> None:
    """The corners hypothesis may not draw every run: 1 x N and N x 1 frames, 1 px, outputs larger than the crop."""
    frame = _view(_values(kind, shape, np.random.default_rng(len(kind))), layout)
    for size in (1, 5, 40, 64):
        for crop in ("center", "full"):
            got, want = native.preprocess_frame(frame, size, crop=crop), ref.preprocess_frame(frame, size, crop=crop)
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
            q = {"out": "int8", "scale": 1 / 128, "zero_point": -1}
            _assert_close_ints(
                native.preprocess_frame(frame, size, crop=crop, **q), ref.preprocess_frame(frame, size, crop=crop, **q)
            )
    gray = np.ascontiguousarray(frame[..., 0])
    for image in (frame, gray):
        assert native.sharpness(image) == pytest.approx(ref.sharpness(image), rel=1e-9, abs=1e-9)
        assert native.exposure(image) == pytest.approx(tuple(ref.exposure(image)), rel=1e-12)
        assert native.dhash64(image) == ref.dhash64(image)
        for mode in ("nearest", "bilinear"):
            _assert_close_ints(native.upscale(image, 3, mode), ref.upscale(image, 3, mode))
