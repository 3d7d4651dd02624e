"""Differential fuzzing of the C++ kernels against their NumPy references, with atheris (libFuzzer).

    python tests/fuzz/fuzz_kernels.py TARGET [libFuzzer flags: -max_total_time=60, -runs=N, -seed=S, ...]

TARGET is one entry point: preprocess_frame, postprocess, tile, upscale, sharpness, exposure, dhash64 or
hamming_nearest (one per process: libFuzzer runs once). Each input becomes arguments and goes to edge._kernels
and to edge.kernels_ref: arrays of any dtype, rank, shape (empty, odd, beyond the size limits via zero-stride
views) and memory layout, and scalars of any type. Both must raise the same TypeError/ValueError with the same
message, or both return equal results (1 LSB, 1e-5 for floats). Anything else is a finding: another exception,
a mismatch, or a crash of the process (an out-of-bounds access in the extension; to catch the silent ones, run
against the sanitizer build: ATELIER_KERNELS_SO=<path of a built _kernels .so> loads that build instead).
`make fuzz` runs every target for a bounded time; tests/edge/kernels/test_kernels_fuzz.py runs a short smoke of each.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import atheris
import numpy as np

if os.environ.get("ATELIER_KERNELS_SO"):  # a specific build, e.g. the ASan + UBSan one
    _spec = importlib.util.spec_from_file_location("edge._kernels", os.environ["ATELIER_KERNELS_SO"])
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
    sys.modules["edge._kernels"] = _module

with atheris.instrument_imports(include=["edge"]):
    from edge import _kernels as native
    from edge import kernels_ref as ref

DTYPES = [np.uint8, np.int8, np.float32, np.uint64, np.int64, np.float64, np.int16, np.dtype(">f4"), np.bool_]
HUGE_SIDE = 70000  # beyond MAX_SIDE_PX, reached through a zero-stride view
ODD_OBJECTS: list[Any] = [None, [1, 2, 3], "frame", 3, 2.5, (4, 4)]


def _rare(fdp: atheris.FuzzedDataProvider, p: float) -> bool:
    """True with probability p; False once the input runs out (so short inputs take the common path)."""
    return fdp.ConsumeProbability() > 1.0 - p


def _array(fdp: atheris.FuzzedDataProvider, dtype: Any, shape: tuple[int, ...], max_side: int = 12) -> Any:
    """Mostly an array of `dtype` and about `shape` (-1 = any side); sometimes anything else."""
    if _rare(fdp, 0.03):
        return fdp.PickValueInList(ODD_OBJECTS)
    if _rare(fdp, 0.1):
        dtype = fdp.PickValueInList(DTYPES)
    if _rare(fdp, 0.1):
        shape = tuple([-1] * fdp.ConsumeIntInRange(0, 5))
    dims = []
    for s in shape:
        if s == -1 or _rare(fdp, 0.1):
            dims.append(fdp.ConsumeIntInRange(0, max_side) if _rare(fdp, 0.1) else fdp.ConsumeIntInRange(1, max_side))
        else:
            dims.append(s)
    dt = np.dtype(dtype)
    layout = fdp.ConsumeIntInRange(0, 5) if dims else 0  # indexing a 0-d array would give a scalar
    if layout == 5 and dims:  # zero-stride view, possibly beyond the size limits
        axis = fdp.ConsumeIntInRange(0, len(dims) - 1)
        base_shape = [1 if i == axis else d for i, d in enumerate(dims)]
        if _rare(fdp, 0.3):
            dims[axis] = HUGE_SIDE
        return np.broadcast_to(_fill(fdp, np.empty(base_shape, dt)), dims)
    if layout == 1:  # every 2nd element of every axis, from an offset
        a = np.empty([2 * d + 1 for d in dims], dt)[tuple(slice(1, None, 2) for _ in dims)]
    elif layout == 2:  # all axes flipped
        a = np.empty(dims, dt)[tuple(slice(None, None, -1) for _ in dims)]
    elif layout == 3 and len(dims) >= 2:  # last axis outermost in memory (planar)
        a = np.moveaxis(np.empty([dims[-1], *dims[:-1]], dt), 0, -1)
    elif layout == 4:
        a = np.asfortranarray(np.empty(dims, dt))
    else:
        a = np.empty(dims, dt)
    return _fill(fdp, a)


def _fill(fdp: atheris.FuzzedDataProvider, a: np.ndarray) -> np.ndarray:
    raw = fdp.ConsumeBytes(a.size * a.itemsize)
    raw = raw + bytes(a.size * a.itemsize - len(raw))
    a[...] = np.frombuffer(raw, a.dtype).reshape(a.shape)
    return a


def _int(fdp: atheris.FuzzedDataProvider, lo: int, hi: int, odd: list[Any]) -> Any:
    if _rare(fdp, 0.15):
        return fdp.PickValueInList([*odd, True, 1.5, "4", None, 2**70, -(2**64), np.int64(3), np.uint8(2)])
    return fdp.ConsumeIntInRange(lo, hi)


# The first five of each are valid.
SCALES: list[Any] = [
    1 / 128,
    0.02,
    1.0,
    1e-300,
    np.float32(0.5),
    None,
    0,
    -1.0,
    math.nan,
    math.inf,
    "0.1",
    True,
]
ZERO_POINTS: list[Any] = [0, -128, 127, 5, np.int8(-3), None, 128, -129, 0.5]


def _quantization(fdp: atheris.FuzzedDataProvider, int8: bool) -> dict[str, Any]:
    """scale and zero_point: mostly what the dtype asks for (a valid pair, or none), sometimes anything."""
    if _rare(fdp, 0.3):
        return {"scale": fdp.PickValueInList(SCALES), "zero_point": fdp.PickValueInList(ZERO_POINTS)}
    if not int8:
        return {"scale": None, "zero_point": None}
    return {"scale": fdp.PickValueInList(SCALES[:5]), "zero_point": fdp.PickValueInList(ZERO_POINTS[:5])}


def _preprocess_frame(fdp: atheris.FuzzedDataProvider) -> tuple[tuple, dict]:
    frame = _array(fdp, np.uint8, (-1, -1, 3), max_side=24)
    size = _int(fdp, 1, 40, [0, -1, 4097])
    kwargs = {
        "crop": fdp.PickValueInList(["center", "full", "middle", None]),
        "out": fdp.PickValueInList(["float", "int8", "int8", "uint8"]),
    }
    return (frame, size), kwargs | _quantization(fdp, kwargs["out"] == "int8")


def _postprocess(fdp: atheris.FuzzedDataProvider) -> tuple[tuple, dict]:
    batch = _array(fdp, fdp.PickValueInList([np.float32, np.int8]), (-1, -1, -1, 3))
    return (batch,), _quantization(fdp, getattr(batch, "dtype", None) == np.int8)


def _tile(fdp: atheris.FuzzedDataProvider) -> tuple[tuple, dict]:
    images = _array(fdp, np.uint8, (-1, -1, -1, 3))
    cols = _int(fdp, 1, 10, [0, -1, 65537])
    pad = _int(fdp, 0, 6, [-1, 1025])
    background = fdp.PickValueInList([0, 255, 7, (1, 2, 3), [9, 8, 7], (1, 2), (0, 300, 0), "white", -1, True])
    return (images, cols, pad, background), {}


def _upscale(fdp: atheris.FuzzedDataProvider) -> tuple[tuple, dict]:
    image = _array(fdp, np.uint8, fdp.PickValueInList([(-1, -1, 3), (-1, -1)]))
    factor = _int(fdp, 1, 8, [0, -1, 65])
    return (image, factor, fdp.PickValueInList(["nearest", "bilinear", "cubic"])), {}


def _frame_only(fdp: atheris.FuzzedDataProvider) -> tuple[tuple, dict]:
    return (_array(fdp, np.uint8, fdp.PickValueInList([(-1, -1, 3), (-1, -1)]), max_side=24),), {}


def _exposure(fdp: atheris.FuzzedDataProvider) -> tuple[tuple, dict]:
    (frame,), _ = _frame_only(fdp)
    return (frame,), {"dark_max": _int(fdp, 0, 255, [-1, 256]), "bright_min": _int(fdp, 0, 255, [-1, 256])}


def _hamming_nearest(fdp: atheris.FuzzedDataProvider) -> tuple[tuple, dict]:
    h = (
        fdp.PickValueInList([-1, 2**64, 1.0, None, np.uint64(7), True])
        if _rare(fdp, 0.1)
        else fdp.ConsumeIntInRange(0, 2**64 - 1)
    )
    return (h, _array(fdp, np.uint64, (-1,), max_side=40)), {}


TARGETS: dict[str, Callable[[atheris.FuzzedDataProvider], tuple[tuple, dict]]] = {
    "preprocess_frame": _preprocess_frame,
    "postprocess": _postprocess,
    "tile": _tile,
    "upscale": _upscale,
    "sharpness": _frame_only,
    "exposure": _exposure,
    "dhash64": _frame_only,
    "hamming_nearest": _hamming_nearest,
}


def _same(name: str, got: Any, want: Any) -> None:
    if isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray), f"{name}: native returned {type(got).__name__}"
        assert got.shape == want.shape and got.dtype == want.dtype, (
            f"{name}: {got.shape} {got.dtype} vs {want.shape} {want.dtype}"
        )
        if got.dtype.kind == "f":
            assert np.allclose(got, want, rtol=0, atol=1e-5), f"{name}: float outputs differ"
        else:
            assert np.abs(got.astype(np.int64) - want.astype(np.int64)).max(initial=0) <= 1, f"{name}: > 1 LSB"
    elif isinstance(want, tuple):
        assert len(got) == len(want), f"{name}: {got} vs {want}"
        for g, w in zip(got, want, strict=True):
            _same(name, g, w)
    elif isinstance(want, float):
        assert math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9), f"{name}: {got} vs {want}"
    else:
        assert type(got) is type(want) and got == want, f"{name}: {got!r} vs {want!r}"


def check(name: str, args: tuple, kwargs: dict) -> None:
    """Calls both implementations; raises AssertionError when they disagree."""
    outcomes = []
    for impl in (native, ref):
        try:
            outcomes.append(("returned", getattr(impl, name)(*args, **kwargs)))
        except (TypeError, ValueError) as exc:
            outcomes.append((type(exc).__name__, str(exc)))
    (kind_n, value_n), (kind_r, value_r) = outcomes
    assert kind_n == kind_r, f"{name}: native {kind_n} {value_n!r}, reference {kind_r} {value_r!r}"
    if kind_n == "returned":
        _same(name, value_n, value_r)
    else:
        assert value_n == value_r, f"{name}: messages differ: {value_n!r} vs {value_r!r}"


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer flags]")
    name = sys.argv[1]
    make_args = TARGETS[name]

    def one_input(data: bytes) -> None:
        args, kwargs = make_args(atheris.FuzzedDataProvider(data))
        check(name, args, kwargs)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
