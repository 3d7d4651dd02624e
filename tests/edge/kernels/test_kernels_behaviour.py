"""What the kernels compute, checked against OpenCV and hand-worked values (not against edge.kernels_ref).

Runs through the public facade edge.kernels (the native backend in this suite).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge import kernels
from edge.procedural_garments import render_garment

RNG = np.random.default_rng(20261125)


def _camera_frame(h: int, w: int, seed: int) -> np.ndarray:
    """A BGR frame with structure (a garment, pasted onto noise) rather than pure noise."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    side = min(h, w) // 2
    garment = render_garment("t-shirt", side, rng)[..., ::-1]  # RGB -> BGR, as a camera gives it
    y0, x0 = (h - side) // 2, (w - side) // 2
    frame[y0 : y0 + side, x0 : x0 + side] = garment
    return frame


def _opencv_chain(frame: np.ndarray, size: int, crop: str = "center") -> np.ndarray:
    """What a user writes today: crop -> INTER_AREA -> BGR2RGB, as uint8 (before scaling to [-1, 1])."""
    if crop == "center":
        h, w = frame.shape[:2]
        side = min(h, w)
        frame = frame[(h - side) // 2 : (h - side) // 2 + side, (w - side) // 2 : (w - side) // 2 + side]
    small = cv2.resize(frame, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize(
    ("h", "w", "size", "crop"),
    [
        (1080, 1920, 128, "center"),
        (1080, 1920, 64, "center"),
        (720, 1280, 128, "center"),
        (480, 640, 100, "full"),
    ],
)
def test_preprocess_agrees_with_opencv_inter_area(h: int, w: int, size: int, crop: str) -> None:
    frame = _camera_frame(h, w, seed=size)
    ours = kernels.preprocess_frame(frame, size, crop=crop)
    assert ours.shape == (size, size, 3) and ours.dtype == np.float32 and ours.flags.c_contiguous
    # OpenCV rounds the area mean to uint8 (<= 0.5) with float weights: within 1 LSB of our exact mean.
    ours_u8 = (ours.astype(np.float64) + 1.0) * 127.5
    assert np.abs(ours_u8 - _opencv_chain(frame, size, crop)).max() <= 1.0


def test_integer_ratio_is_the_block_mean() -> None:
    frame = RNG.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    block = frame[:, 16:80].reshape(16, 4, 16, 4, 3).mean(axis=(1, 3))[..., ::-1]
    np.testing.assert_allclose(kernels.preprocess_frame(frame, 16), block / 127.5 - 1.0, atol=1e-6)


@pytest.mark.parametrize("size", [1, 3, 128, 300])
@pytest.mark.parametrize("crop", ["center", "full"])
def test_flat_frames_stay_flat_at_the_ends_of_the_range(size: int, crop: str) -> None:
    black, white = np.zeros((90, 160, 3), np.uint8), np.full((90, 160, 3), 255, np.uint8)
    assert np.all(kernels.preprocess_frame(black, size, crop=crop) == -1.0)
    assert np.all(kernels.preprocess_frame(white, size, crop=crop) == 1.0)
    q = dict(out="int8", scale=1 / 128, zero_point=0)
    assert np.all(kernels.preprocess_frame(black, size, crop=crop, **q) == -128)
    assert np.all(kernels.preprocess_frame(white, size, crop=crop, **q) == 127)  # 128 clamps to 127


def test_channels_come_out_rgb_and_the_crop_is_centred() -> None:
    frame = np.zeros((10, 30, 3), np.uint8)
    frame[:, 10:20] = (255, 0, 0)  # the centre square is pure blue in BGR
    centre = kernels.preprocess_frame(frame, 5)
    assert np.all(centre[..., 2] == 1.0) and np.all(centre[..., :2] == -1.0)
    full = kernels.preprocess_frame(frame, 6, crop="full")
    np.testing.assert_array_equal(full[:, :2, 2], -1.0)  # the black left third
    np.testing.assert_array_equal(full[:, 2:4, 2], 1.0)


def test_postprocess_hand_values() -> None:
    q = np.array([-128, -1, 0, 1, 127, 0], np.int8).reshape(1, 1, 2, 3)
    got = kernels.postprocess(q, scale=1 / 128, zero_point=0).ravel().tolist()
    # (q / 128 + 1) * 127.5 = 0, 126.504, 127.5 (half to even: 128), 128.496, 254.004, 127.5
    assert got == [0, 127, 128, 128, 254, 128]
    x = np.array([-1.0, 0.0, 1.0, -7.0, 9.0, np.nan], np.float32).reshape(1, 1, 2, 3)
    assert kernels.postprocess(x).ravel().tolist() == [0, 128, 255, 0, 255, 0]


def test_tile_places_images_row_major() -> None:
    images = np.stack([np.full((2, 3, 3), v, np.uint8) for v in (10, 20, 30)])
    grid = kernels.tile(images, cols=2, pad=1, background=(1, 2, 3))
    assert grid.shape == (2 * 2 + 3, 2 * 3 + 3, 3)
    assert np.all(grid[1:3, 1:4] == 10) and np.all(grid[1:3, 5:8] == 20) and np.all(grid[4:6, 1:4] == 30)
    assert np.all(grid[4:6, 5:8] == (1, 2, 3)) and np.all(grid[0] == (1, 2, 3)) and np.all(grid[:, 4] == (1, 2, 3))


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_upscale_agrees_with_opencv(factor: int) -> None:
    image = render_garment("dress", 32, np.random.default_rng(factor))
    size = (32 * factor, 32 * factor)
    nearest = kernels.upscale(image, factor)
    np.testing.assert_array_equal(nearest, cv2.resize(image, size, interpolation=cv2.INTER_NEAREST))
    bilinear = kernels.upscale(image, factor, "bilinear").astype(int)
    assert np.abs(bilinear - cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)).max() <= 1


def test_sharpness_is_the_laplacian_variance_and_drops_with_blur() -> None:
    frame = _camera_frame(120, 160, seed=5)
    f = frame.astype(np.int64)
    y = (77 * f[..., 2] + 150 * f[..., 1] + 29 * f[..., 0] + 128) >> 8  # BT.601 integer luma
    lap = cv2.Laplacian(y.astype(np.float64), cv2.CV_64F, ksize=1)[1:-1, 1:-1]
    assert kernels.sharpness(frame) == pytest.approx(lap.var(), rel=1e-9)
    blurred = cv2.GaussianBlur(frame, (7, 7), 2.0)
    assert kernels.sharpness(blurred) < kernels.sharpness(frame) / 4
    assert kernels.sharpness(np.full((50, 50, 3), 77, np.uint8)) == 0.0
    assert kernels.sharpness(frame[:2]) == 0.0  # no interior pixels


def test_exposure_thresholds_are_inclusive() -> None:
    gray = np.array([[0, 16, 17, 100], [234, 235, 255, 255]], np.uint8)
    e = kernels.exposure(gray)
    assert e == kernels.Exposure(mean_luma=1112 / 8, dark_fraction=2 / 8, bright_fraction=3 / 8)
    assert kernels.exposure(gray, dark_max=0, bright_min=255) == (1112 / 8, 1 / 8, 2 / 8)
    assert kernels.exposure(np.full((4, 4, 3), 255, np.uint8)) == (255.0, 0.0, 1.0)


def test_dhash_bits_follow_the_gradient_and_survive_rescaling() -> None:
    ramp = np.tile(np.linspace(0, 255, 90).astype(np.uint8), (40, 1))
    assert kernels.dhash64(ramp) == 2**64 - 1  # every cell darker than its right neighbour
    assert kernels.dhash64(ramp[:, ::-1]) == 0
    assert kernels.dhash64(np.full((30, 30, 3), 9, np.uint8)) == 0
    frame = _camera_frame(90, 120, seed=8)
    h = kernels.dhash64(frame)
    assert kernels.dhash64(kernels.upscale(frame, 2)) == h  # exact area means are scale-invariant
    ok, jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    recompressed = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    other = _camera_frame(90, 120, seed=9)[:, ::-1]
    table = np.array([kernels.dhash64(other), kernels.dhash64(recompressed)], np.uint64)
    index, distance = kernels.hamming_nearest(h, table)
    assert index == 1 and distance <= 8


def test_hamming_nearest_returns_the_first_of_equals() -> None:
    table = np.array([0b1111, 0b0111, 0b1011, 0b0011], np.uint64)
    assert kernels.hamming_nearest(0b0001, table) == (3, 1)
    assert kernels.hamming_nearest(0b1100, table[:3]) == (0, 2)
    assert kernels.hamming_nearest(2**64 - 1, table) == (0, 60)
