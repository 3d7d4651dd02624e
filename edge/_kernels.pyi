"""Type stub of the private C++ module edge._kernels (csrc/module.cpp); use edge.kernels, the documented API.

A test holds this stub, the compiled module and edge.kernels_ref to the same names, parameters and defaults.
"""

import numpy as np

MAX_SIDE_PX: int
MAX_MODEL_SIZE_PX: int
MAX_OUTPUT_BYTES: int

def preprocess_frame(
    frame: np.ndarray,
    size: int,
    *,
    crop: str = "center",
    out: str = "float",
    scale: float | None = None,
    zero_point: int | None = None,
) -> np.ndarray: ...
def postprocess(batch: np.ndarray, *, scale: float | None = None, zero_point: int | None = None) -> np.ndarray: ...
def tile(images: np.ndarray, cols: int, pad: int = 4, background: int | tuple[int, int, int] = 255) -> np.ndarray: ...
def upscale(image: np.ndarray, factor: int, mode: str = "nearest") -> np.ndarray: ...
def sharpness(frame: np.ndarray) -> float: ...
def exposure(frame: np.ndarray, *, dark_max: int = 16, bright_min: int = 235) -> tuple[float, float, float]: ...
def dhash64(frame: np.ndarray) -> int: ...
def hamming_nearest(h: int, table: np.ndarray) -> tuple[int, int]: ...
