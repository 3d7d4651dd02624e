"""Design from my garment: a camera frame or photo -> the bundle's encoder -> a latent -> design IDs.

The frame goes through `edge.kernels.preprocess_frame` (centre square, exact area resize, BGR -> RGB, int8 with
the encoder input's scale and zero point: the one preprocessing path the camera preview and the captures use),
then the int8 encoder (`encoder_b1.tflite`, trained by `atelier train-encoder`) gives z (and class logits for a
conditional bundle). The designs are the reconstruction, then variations around it at growing radii:

    MODEL.CLASS.e<latent>              the reconstruction (the latent quantized into the ID)
    MODEL.CLASS.n<j>-<r>.e<latent>     variation j at radius r/1000 prior std devs

so every design regenerates bit for bit from its ID alone, "More like this" and "Mix" work on them as on any
design, and the frame itself is never stored. Frames that are black, blown out or flat are refused with a
message the shopper can act on.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from edge.bundle import Bundle, BundleError
from edge.designs import quantize
from edge.errors import UserError
from edge.kernels import exposure, preprocess_frame
from edge.kiosk.latents import DesignId, Encoded, Neighbour, encode_latent
from edge.litert import load_interpreter

log = logging.getLogger(__name__)

# Variations after the reconstruction: radius (thousandths of a prior std dev) of each, nearest first.
VARIATION_RADII_MILLI: tuple[int, ...] = (200, 300, 400, 550, 700)
# Exposure limits for a usable frame (luma, BT.601): a covered lens, a lamp pointed at the camera, a blank wall.
DARK_MEAN_LUMA = 20.0
BRIGHT_FRACTION = 0.9
DARK_FRACTION = 0.9
MIN_LUMA_STD = 4.0


class InspireError(UserError):
    """A frame or photo the encoder cannot use; `status` is the HTTP status the kiosk answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Encoding:
    """What the encoder made of one frame."""

    z: np.ndarray  # float32 (z_dim,): the encoder's output projected onto the prior (before the ID's rounding)
    class_id: int | None  # the most likely class of a conditional bundle, None when unconditional
    class_confidence: float | None  # its softmax probability


def check_frame(bgr: np.ndarray) -> None:
    """Refuse a frame nobody could design from: black, over-exposed or featureless.

    Raises:
        InspireError: (422) with a message saying what to change.
    """
    if not isinstance(bgr, np.ndarray) or bgr.dtype != np.uint8 or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise InspireError("the picture is not a colour image", 400)
    exp = exposure(bgr)
    if exp.mean_luma < DARK_MEAN_LUMA or exp.dark_fraction > DARK_FRACTION:
        raise InspireError("the picture is too dark: hold the garment in the light, in front of the camera")
    if exp.bright_fraction > BRIGHT_FRACTION:
        raise InspireError("the picture is over-exposed (almost all white): step out of the glare and try again")
    luma = bgr[::4, ::4].astype(np.float32) @ np.float32([29 / 256, 150 / 256, 77 / 256])
    if float(luma.std()) < MIN_LUMA_STD:
        raise InspireError("the picture is blank: hold the garment up so it fills the frame")


class PhotoEncoder:
    """Runs a bundle's int8 encoder; thread-safe (one interpreter behind a lock).

    Raises:
        BundleError: the bundle has no usable encoder (its `encoder_error` says why), or the file does not
            match its manifest entry.
    """

    def __init__(self, bundle: Bundle, num_threads: int = 2, delegate: str = "cpu") -> None:
        if bundle.encoder is None:
            why = bundle.encoder_error or "this model was exported without an encoder (atelier train-encoder)"
            raise BundleError(f"no inspire encoder: {why}")
        self.bundle = bundle
        self.entry = bundle.encoder
        path = bundle.path / self.entry.file
        self.interpreter, self.backend = load_interpreter(path, num_threads=num_threads, delegate=delegate)
        runner_inputs, runner_outputs = self._signature()
        spec = self.entry.input
        got = runner_inputs.get(spec.name)
        if got is None or tuple(got["shape"]) != spec.shape or np.dtype(got["dtype"]).name != spec.dtype:
            raise BundleError(f"{path} does not take the {spec.dtype} {list(spec.shape)} image its manifest "
                              "describes: re-run `atelier train-encoder`")
        self._input_index = got["index"]
        self._outputs = []
        for tensor in self.entry.outputs:
            out = runner_outputs.get(tensor.name)
            if out is None or tuple(out["shape"]) != tensor.shape:
                raise BundleError(f"{path} has no output {tensor.name} {list(tensor.shape)} as its manifest says")
            self._outputs.append((out["index"], tensor))
        self._lock = threading.Lock()

    def _signature(self) -> tuple[dict, dict]:
        signatures = self.interpreter.get_signature_list()
        if len(signatures) != 1:
            raise BundleError(f"{self.entry.file} should have one signature, has {list(signatures)}")
        runner = self.interpreter.get_signature_runner(next(iter(signatures)))
        return dict(runner.get_input_details()), dict(runner.get_output_details())

    @property
    def size_px(self) -> int:
        return self.entry.input.shape[1]

    def model_input(self, bgr: np.ndarray) -> np.ndarray:
        """A BGR frame -> the encoder's input (size x size x 3, its dtype), through preprocess_frame."""
        spec = self.entry.input
        if spec.dtype == "int8":
            return preprocess_frame(bgr, self.size_px, crop="center", out="int8", scale=spec.scale,
                                    zero_point=spec.zero_point)
        return preprocess_frame(bgr, self.size_px, crop="center", out="float").astype(spec.dtype)

    def encode_input(self, x: np.ndarray) -> Encoding:
        """Run the encoder on one preprocessed input (see `model_input`); float RGB in [-1, 1] is quantized."""
        if x.dtype == np.float32 and self.entry.input.dtype != "float32":
            x = quantize(x, self.entry.input)
        with self._lock:
            self.interpreter.set_tensor(self._input_index, x[None])
            self.interpreter.invoke()
            raw = [self.interpreter.get_tensor(index)[0] for index, _ in self._outputs]
        values = [_dequantize(r, t.scale, t.zero_point) for r, (_, t) in zip(raw, self._outputs, strict=True)]
        z = project_to_prior(values[0], self.bundle.z_distribution)
        if not np.isfinite(z).all():
            raise InspireError("the encoder produced no usable latent for this picture", 500)
        if len(values) == 1:
            return Encoding(z, None, None)
        logits = values[1].astype(np.float64)
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        best = int(np.argmax(probs))
        return Encoding(z, best, float(probs[best]))

    def encode(self, bgr: np.ndarray) -> Encoding:
        """Check a BGR frame (`check_frame`) and encode it."""
        check_frame(bgr)
        return self.encode_input(self.model_input(bgr))


def project_to_prior(u: np.ndarray, distribution: str) -> np.ndarray:
    """The encoder's raw output -> a latent on the prior's typical set, as in training (trainer.encoder_train):
    N(0, I): sqrt(z_dim) u / |u| (prior latents lie near that sphere); U(-1, 1): tanh(u)."""
    u = np.asarray(u, np.float64)
    if distribution == "uniform":
        return np.tanh(u).astype(np.float32)
    return (u * np.sqrt(u.shape[-1]) / (np.linalg.norm(u) + 1e-6)).astype(np.float32)


def _dequantize(raw: np.ndarray, scale: float | None, zero_point: int | None) -> np.ndarray:
    if scale is None:
        return raw.astype(np.float64)
    return (raw.astype(np.float64) - float(zero_point or 0)) * scale


def inspired_ids(bundle: Bundle, encoding: Encoding, n: int | None = None,
                 class_id: int | None = None) -> list[DesignId]:
    """The reconstruction's ID, then variations at VARIATION_RADII_MILLI (n designs in all, at most 1 + radii).

    Args:
        bundle: the bundle serving (its model ID and prior go into the IDs).
        encoding: the encoder's output for the frame.
        n: how many designs (default all); 1 is the reconstruction alone.
        class_id: the class to draw for a conditional bundle; default the encoder's guess.
    """
    total = 1 + len(VARIATION_RADII_MILLI)
    n = total if n is None else n
    if not 1 <= n <= total:
        raise InspireError(f"n must be between 1 and {total}", 400)
    cls = None if bundle.class_names is None else (encoding.class_id if class_id is None else class_id)
    leaf: Encoded = encode_latent(encoding.z, bundle.z_distribution)
    designs = [DesignId(bundle.model_id, cls, leaf)]
    designs += [DesignId(bundle.model_id, cls, Neighbour(leaf, j, r))
                for j, r in enumerate(VARIATION_RADII_MILLI[: n - 1])]
    return designs
