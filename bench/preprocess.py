"""Benchmark: camera frame -> model input, and generator output -> display grid, one thread, one run.

preprocess_frame (C++) against the OpenCV chain a user writes today (slice crop -> cv2.resize(INTER_AREA) ->
cv2.cvtColor -> astype(float32) / 127.5 - 1) and against pure NumPy (edge.kernels_ref), for 1920x1080 -> 128,
1920x1080 -> 64 and 1280x720 -> 128; then postprocess + tile of a 16-design int8 batch against NumPy.
Prints medians, ratios, and how far the outputs are from the exact reference in 8-bit steps (LSB).

    python bench/preprocess.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os

# One thread everywhere, before numpy and OpenCV load their thread pools.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from edge import _kernels as native  # noqa: E402
from edge import kernels_ref as ref  # noqa: E402
from edge.procedural_garments import render_garment  # noqa: E402

CV2_DEFAULT_THREADS = cv2.getNumThreads()
cv2.setNumThreads(1)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: page in the output, build caches
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def camera_frame(h: int, w: int, seed: int) -> np.ndarray:
    """Sensor-like noise with a garment in the middle, BGR."""
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    side = min(h, w) // 2
    y0, x0 = (h - side) // 2, (w - side) // 2
    frame[y0 : y0 + side, x0 : x0 + side] = render_garment("dress", side, rng)[..., ::-1]
    return frame


def opencv_chain(frame: np.ndarray, size: int) -> np.ndarray:
    h, w = frame.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    crop = frame[y0 : y0 + side, x0 : x0 + side]
    small = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2RGB).astype(np.float32) / 127.5 - 1.0


def lsb(a: np.ndarray, b: np.ndarray) -> float:
    """Largest difference of two [-1, 1] images in 8-bit steps."""
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max() * 127.5)


def bench_preprocess(repeats: int) -> None:
    print("preprocess_frame: BGR uint8 camera frame -> centre crop -> area resize -> RGB float32 [-1, 1]")
    print(f"{'case':<22}{'ours ms':>9}{'OpenCV ms':>11}{'NumPy ms':>10}{'OpenCV/ours':>13}{'NumPy/ours':>12}"
          f"{'ours-ref LSB':>14}{'cv2-ref LSB':>13}")  # fmt: skip
    for h, w, size in ((1080, 1920, 128), (1080, 1920, 64), (720, 1280, 128)):
        frame = camera_frame(h, w, seed=size + h)
        ours = median_ms(lambda f=frame, s=size: native.preprocess_frame(f, s), repeats)
        chain = median_ms(lambda f=frame, s=size: opencv_chain(f, s), repeats)
        numpy = median_ms(lambda f=frame, s=size: ref.preprocess_frame(f, s), max(3, repeats // 10))
        exact = ref.preprocess_frame(frame, size)
        d_ours = lsb(native.preprocess_frame(frame, size), exact)
        d_cv2 = lsb(opencv_chain(frame, size), exact)
        print(f"{f'{w}x{h} -> {size}':<22}{ours:>9.3f}{chain:>11.3f}{numpy:>10.2f}{chain / ours:>12.1f}x"
              f"{numpy / ours:>11.1f}x{d_ours:>14.4f}{d_cv2:>13.3f}")  # fmt: skip
    frame = camera_frame(1080, 1920, seed=1)
    cv2.setNumThreads(CV2_DEFAULT_THREADS)  # for reference only: the comparison above is one thread each
    threaded = median_ms(lambda: opencv_chain(frame, 128), repeats)
    cv2.setNumThreads(1)
    print(f"(OpenCV chain with its default {CV2_DEFAULT_THREADS} threads, 1920x1080 -> 128: {threaded:.3f} ms)")
    q = {"out": "int8", "scale": 1 / 128, "zero_point": 0}
    ours = median_ms(lambda: native.preprocess_frame(frame, 128, **q), repeats)
    diff = np.abs(native.preprocess_frame(frame, 128, **q).astype(int) - ref.preprocess_frame(frame, 128, **q)).max()
    print(f"int8 output, 1920x1080 -> 128: ours {ours:.3f} ms, max difference from the reference {diff} LSB")


def numpy_postprocess_tile(batch: np.ndarray, cols: int, pad: int) -> np.ndarray:
    """What a user writes in NumPy: dequantize, rescale, round, then paste the tiles into a grid."""
    x = batch.astype(np.float32) / 128.0
    images = np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8)
    n, h, w = images.shape[:3]
    rows = -(-n // cols)
    grid = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, 3), 255, np.uint8)
    for i in range(n):
        top, left = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
        grid[top : top + h, left : left + w] = images[i]
    return grid


def bench_postprocess(repeats: int) -> None:
    batch = np.random.default_rng(0).integers(-128, 128, (16, 128, 128, 3)).astype(np.int8)
    q = {"scale": 1 / 128, "zero_point": 0}

    def ours_fn() -> np.ndarray:
        return native.tile(native.postprocess(batch, **q), 4, 4, 255)

    ours = median_ms(ours_fn, repeats)
    user = median_ms(lambda: numpy_postprocess_tile(batch, 4, 4), repeats)
    reference = median_ms(lambda: ref.tile(ref.postprocess(batch, **q), 4, 4, 255), max(3, repeats // 5))
    diff = np.abs(ours_fn().astype(int) - numpy_postprocess_tile(batch, 4, 4)).max()
    print("\npostprocess + tile: 16 x 128 x 128 x 3 int8 (scale 1/128) -> one 4 x 4 grid, uint8 RGB")
    print(f"ours {ours:.3f} ms, NumPy {user:.3f} ms ({user / ours:.1f}x), edge.kernels_ref {reference:.3f} ms "
          f"({reference / ours:.1f}x); max difference {diff} LSB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per measurement (median reported)")
    args = parser.parse_args()
    bench_preprocess(args.repeats)
    bench_postprocess(args.repeats)


if __name__ == "__main__":
    main()
