"""The bundle's learned 2x upscaler (`upscaler_b1.tflite`, trained by `atelier train-upscaler`) at the kiosk.

`enlarge(design, factor)` is what the kiosk's large pictures go through: with an upscaler, the first 2x is
learned (int8, batch 1: a 128 px design in, 256 px out) and any further factor is the C++ bilinear `upscale`
kernel; without one (none exported, or a file that fails its checks) it is the bilinear kernel alone, as before.
The upscaler fails soft like the encoder: `load_upscaler` returns None and the reason, the kiosk logs it once and
serves bilinear enlargements.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from edge.bundle import Bundle, BundleError, TensorQuant, check_optional_file, parse_tensor
from edge.designs import quantize
from edge.kernels import postprocess, upscale
from edge.litert import load_interpreter

log = logging.getLogger(__name__)

FACTOR = 2
REMEDY = "re-run `atelier train-upscaler`"


class Upscaler:
    """Runs a bundle's int8 upscaler; thread-safe (one interpreter behind a lock).

    Raises:
        BundleError: the manifest entry or the file is wrong (the message says what).
    """

    def __init__(self, bundle: Bundle, num_threads: int = 2, delegate: str = "cpu") -> None:
        where = f"manifest in {bundle.path}, upscaler"
        data = bundle.manifest.get("upscaler")
        file = check_optional_file(data, bundle.path, where, REMEDY)
        assert isinstance(data, dict)
        self.input: TensorQuant = parse_tensor(data.get("input"), f"{where}.input")
        self.output: TensorQuant = parse_tensor(data.get("output"), f"{where}.output")
        size = bundle.size_px
        if self.input.shape != (1, size, size, 3) or self.output.shape != (1, FACTOR * size, FACTOR * size, 3):
            raise BundleError(f"{where} maps {list(self.input.shape)} to {list(self.output.shape)}; expected "
                              f"{[1, size, size, 3]} to {[1, FACTOR * size, FACTOR * size, 3]}: {REMEDY}")
        self.interpreter, self.backend = load_interpreter(bundle.path / file, num_threads=num_threads,
                                                          delegate=delegate)
        details = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(details[0]) != 1 or len(details[1]) != 1 or tuple(details[0][0]["shape"]) != self.input.shape \
                or tuple(details[1][0]["shape"]) != self.output.shape:
            raise BundleError(f"{bundle.path / file} does not match its manifest entry: {REMEDY}")
        self._in, self._out = details[0][0]["index"], details[1][0]["index"]
        self._lock = threading.Lock()

    def upscale2x(self, design: np.ndarray) -> np.ndarray:
        """One design (size, size, 3) uint8 RGB -> (2 size, 2 size, 3) uint8."""
        x = design.astype(np.float32)[None] / 127.5 - 1.0
        with self._lock:
            self.interpreter.set_tensor(self._in, quantize(x, self.input))
            self.interpreter.invoke()
            raw = self.interpreter.get_tensor(self._out)
        if self.output.scale is None:
            return postprocess(raw.astype(np.float32))[0]
        return postprocess(raw, scale=self.output.scale, zero_point=self.output.zero_point)[0]


def load_upscaler(bundle: Bundle, num_threads: int = 2, delegate: str = "cpu") -> tuple[Upscaler | None, str | None]:
    """(upscaler, None), or (None, why) for a bundle without a usable one (None, None: it has none)."""
    if bundle.manifest.get("upscaler") is None:
        return None, None
    try:
        return Upscaler(bundle, num_threads=num_threads, delegate=delegate), None
    except BundleError as exc:
        reason = str(exc)
    except Exception as exc:  # the runtime refusing a damaged flatbuffer: enlargements fall back to bilinear
        reason = f"the upscaler file cannot be loaded ({type(exc).__name__})"
    log.warning("event=upscaler_unavailable model_id=%s reason=%s", bundle.model_id, reason)
    return None, reason


def enlarge(design: np.ndarray, factor: int, upscaler: Upscaler | None) -> np.ndarray:
    """A design enlarged `factor` times: the learned 2x first when there is an upscaler for its size and the factor
    is even; the bilinear kernel otherwise."""
    if upscaler is not None and factor % FACTOR == 0 and design.shape == upscaler.input.shape[1:]:
        big = upscaler.upscale2x(design)
        return big if factor == FACTOR else upscale(big, factor // FACTOR, mode="bilinear")
    return upscale(design, factor, mode="bilinear")
