"""Spectrally normalised Conv2D and Dense layers for the discriminator (Miyato et al. 2018).

The kernel W is used as W / sigma(W), with sigma estimated by one power-iteration step per training call; the
iteration vector `u` is a non-trainable weight, so it is checkpointed and resumed with the model.
"""

from __future__ import annotations

import keras
from keras import ops


def _normalize(v, eps: float = 1e-12):
    return v / (ops.sqrt(ops.sum(v * v)) + eps)


class _SpectralMixin:
    """Shared power iteration: `self.kernel` and `self.sn_u` must exist."""

    def _sn_kernel(self, training: bool | None):
        w = ops.reshape(self.kernel, (-1, self.kernel.shape[-1]))  # (fan_in, out)
        u = self.sn_u  # (1, out)
        v = ops.stop_gradient(_normalize(ops.matmul(u, ops.transpose(w))))  # (1, fan_in)
        u_new = ops.stop_gradient(_normalize(ops.matmul(v, w)))  # (1, out)
        sigma = ops.sum(ops.matmul(v, w) * u_new)
        if training:
            self.sn_u.assign(u_new)
        return self.kernel / sigma

    def _add_sn_u(self, out_dim: int) -> None:
        self.sn_u = self.add_weight(
            shape=(1, out_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            trainable=False,
            name="sn_u",
        )


@keras.saving.register_keras_serializable(package="atelier")
class SNConv2D(_SpectralMixin, keras.layers.Layer):
    """Conv2D ('same' padding) with a spectrally normalised kernel."""

    def __init__(self, filters: int, kernel_size: int, strides: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides = filters, kernel_size, strides

    def build(self, input_shape):
        k, cin = self.kernel_size, input_shape[-1]
        self.kernel = self.add_weight(
            shape=(k, k, cin, self.filters), initializer="glorot_uniform", name="kernel"
        )
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")
        self._add_sn_u(self.filters)

    def call(self, x, training=None):
        y = ops.conv(x, self._sn_kernel(training), strides=self.strides, padding="same")
        return y + self.bias

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides}


@keras.saving.register_keras_serializable(package="atelier")
class SNDense(_SpectralMixin, keras.layers.Layer):
    """Dense with a spectrally normalised kernel."""

    def __init__(self, units: int, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.units, self.use_bias = units, use_bias

    def build(self, input_shape):
        self.kernel = self.add_weight(shape=(input_shape[-1], self.units), initializer="glorot_uniform",
                                      name="kernel")
        self.bias = (self.add_weight(shape=(self.units,), initializer="zeros", name="bias")
                     if self.use_bias else None)
        self._add_sn_u(self.units)

    def call(self, x, training=None):
        y = ops.matmul(x, self._sn_kernel(training))
        return y + self.bias if self.bias is not None else y

    def get_config(self):
        return {**super().get_config(), "units": self.units, "use_bias": self.use_bias}
