"""Graph rewrites before TFLite conversion: fold BatchNorm, turn UpSampling2D into one resize op.

BatchNorm folding. In inference mode a BatchNorm over the channel axis is a per-channel affine map,

    y = gamma * (x - mean) / sqrt(var + eps) + beta = s * x + (beta - s * mean),  s = gamma / sqrt(var + eps),

so when `x = W @ a + b` comes straight from a Dense, Conv2D or Conv2DTranspose layer (no activation in
between) the pair is one linear layer with `W' = W * s` (per output channel) and `b' = s * (b - mean) + beta`.
The TFLite converter does this itself for Conv2D + BN, but not reliably for Conv2DTranspose + BN
(tensorflow#57680, #43939) nor across a Reshape (Dense -> Reshape -> BN), and an unfolded BN leaves a MUL/ADD
pair per layer in the int8 graph: slower, and one more requantisation step that costs parity.

Upsampling. Keras 3 lowers `UpSampling2D(interpolation="nearest")` to repeat ops that convert to five
RESHAPE/TILE ops per layer; TILE is not an Edge TPU op. A nearest resize to exactly twice the size
computes the same pixels and converts to one RESIZE_NEAREST_NEIGHBOR, which XNNPACK and the Edge TPU both run.

`prepare_for_tflite(model)` returns a new functional model (weights copied) with both rewrites applied, and a
report of what it did and what it could not do, which the exporter puts in the manifest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import keras
import numpy as np

log = logging.getLogger(__name__)

# Layers whose output channel is the last kernel axis (Dense, Conv2D) or axis 2 (Conv2DTranspose:
# Keras stores its kernel as (kh, kw, out_channels, in_channels)).
_KERNEL_OUT_AXIS: dict[type, int] = {
    keras.layers.Dense: -1,
    keras.layers.Conv2D: -1,
    keras.layers.Conv2DTranspose: 2,
}


@dataclass
class GraphReport:
    """What `prepare_for_tflite` changed."""

    folded_batchnorm: list[str] = field(default_factory=list)  # BN layers folded into the layer before them
    unfolded_batchnorm: list[str] = field(
        default_factory=list
    )  # BN layers left as they were (no linear before)
    upsampling_to_resize: list[str] = field(default_factory=list)  # UpSampling2D layers now a nearest resize

    def to_json(self) -> dict[str, list[str]]:
        return {
            "folded_batchnorm": self.folded_batchnorm,
            "unfolded_batchnorm": self.unfolded_batchnorm,
            "upsampling_to_resize": self.upsampling_to_resize,
        }


@dataclass(frozen=True)
class _Fold:
    """One BN folded into one linear layer; `unit_channel[u]` is the BN channel of linear output unit u."""

    linear: keras.layers.Layer
    bn: keras.layers.BatchNormalization
    unit_channel: np.ndarray


def _producer(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    """The layer whose output is `layer`'s only input, or None when it has several inputs or call sites."""
    if len(layer._inbound_nodes) != 1:
        return None
    inputs = layer._inbound_nodes[0].input_tensors
    if len(inputs) != 1:
        return None
    return inputs[0]._keras_history.operation


def _single_consumer(layer: keras.layers.Layer) -> bool:
    return len(layer._inbound_nodes) == 1 and len(layer._outbound_nodes) == 1


def _bn_scale_shift(bn: keras.layers.BatchNormalization) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (s, t) with BN(x) = s * x + t in inference mode."""
    mean = keras.ops.convert_to_numpy(bn.moving_mean).astype(np.float64)
    var = keras.ops.convert_to_numpy(bn.moving_variance).astype(np.float64)
    gamma = keras.ops.convert_to_numpy(bn.gamma).astype(np.float64) if bn.scale else np.ones_like(mean)
    beta = keras.ops.convert_to_numpy(bn.beta).astype(np.float64) if bn.center else np.zeros_like(mean)
    s = gamma / np.sqrt(var + bn.epsilon)
    return s, beta - s * mean


def _find_fold(bn: keras.layers.BatchNormalization) -> _Fold | None:
    """How `bn` folds into the linear layer before it, or None when it does not."""
    rank = len(bn.input.shape)
    if bn.axis not in (-1, rank - 1):
        return None
    channels = int(bn.input.shape[-1])
    prev = _producer(bn)
    reshape = None
    if isinstance(prev, keras.layers.Reshape) and _single_consumer(prev):
        reshape, prev = prev, _producer(prev)
    if prev is None or type(prev) not in _KERNEL_OUT_AXIS or not _single_consumer(prev):
        return None
    if getattr(prev.activation, "__name__", "linear") != "linear":
        return None  # an activation between the linear layer and the BN: not an affine pair
    units = int(prev.output.shape[-1])
    if reshape is None:
        if units != channels:
            return None
        unit_channel = np.arange(units)
    else:
        # Reshape is row-major, so Dense unit u lands on channel u % C when the target's last axis is C.
        if not isinstance(prev, keras.layers.Dense) or units % channels:
            return None
        unit_channel = np.arange(units) % channels
    return _Fold(linear=prev, bn=bn, unit_channel=unit_channel)


def _folded_weights(fold: _Fold) -> list[np.ndarray]:
    linear = fold.linear
    kernel = keras.ops.convert_to_numpy(linear.kernel).astype(np.float64)
    bias_shape = kernel.shape[_KERNEL_OUT_AXIS[type(linear)]]
    bias = (
        keras.ops.convert_to_numpy(linear.bias).astype(np.float64)
        if linear.use_bias
        else np.zeros(bias_shape, np.float64)
    )
    s, t = _bn_scale_shift(fold.bn)
    s_unit, t_unit = s[fold.unit_channel], t[fold.unit_channel]
    axis = _KERNEL_OUT_AXIS[type(linear)] % kernel.ndim
    shape = [1] * kernel.ndim
    shape[axis] = -1
    kernel = kernel * s_unit.reshape(shape)
    bias = s_unit * bias + t_unit
    return [kernel.astype(np.float32), bias.astype(np.float32)]


class NearestResize(keras.layers.Layer):
    """Nearest-neighbour resize to a fixed size: one RESIZE_NEAREST_NEIGHBOR op in TFLite.

    Not `keras.layers.Resizing`: that preprocessing layer changes the call context so that BatchNorm layers
    after it trace in training mode on export (moving-statistics updates end up in the TFLite graph).
    """

    def __init__(self, height: int, width: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.height, self.width = height, width

    def call(self, x):
        return keras.ops.image.resize(x, (self.height, self.width), interpolation="nearest")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self) -> dict:
        return {**super().get_config(), "height": self.height, "width": self.width}


def _resize_for(layer: keras.layers.Layer) -> keras.layers.Layer | None:
    """A NearestResize computing what `layer` (an UpSampling2D) does, or None if there is none."""
    if layer.interpolation != "nearest" or layer.data_format != "channels_last":
        return None
    in_h, in_w = layer.input.shape[1], layer.input.shape[2]
    if in_h is None or in_w is None:
        return None
    size_h, size_w = layer.size
    return NearestResize(in_h * size_h, in_w * size_w, name=layer.name)


def prepare_for_tflite(model: keras.Model) -> tuple[keras.Model, GraphReport]:
    """Return a copy of a functional `model` with BatchNorm folded and nearest upsampling made a resize.

    Args:
        model: a Keras 3 functional model (e.g. the generator), evaluated in inference mode.

    Returns:
        (new_model, report): the new model computes the same function in inference mode (up to float
        rounding).
    """
    report = GraphReport()
    folds: dict[str, _Fold] = {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            fold = _find_fold(layer)
            if fold is None:
                report.unfolded_batchnorm.append(layer.name)
            else:
                folds[fold.linear.name] = fold
                report.folded_batchnorm.append(layer.name)
    folded_bns = set(report.folded_batchnorm)

    def clone(layer: keras.layers.Layer) -> keras.layers.Layer:
        if isinstance(layer, keras.layers.UpSampling2D):
            resize = _resize_for(layer)
            if resize is not None:
                report.upsampling_to_resize.append(layer.name)
                return resize
        config = layer.get_config()
        if layer.name in folds:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    def call(layer: keras.layers.Layer, *args, **kwargs):
        if layer.name in folded_bns:
            return args[0]
        return layer(*args, **kwargs)

    new = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in model.layers:
        if layer.name in folded_bns or not layer.weights:
            continue
        target = new.get_layer(layer.name)
        if layer.name in folds:
            target.set_weights(_folded_weights(folds[layer.name]))
        else:
            target.set_weights(layer.get_weights())
    log.debug("graph rewrites: %s", report.to_json())
    return new, report
