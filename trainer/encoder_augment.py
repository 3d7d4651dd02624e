"""Augmentations that make a generated design look like a camera frame of a garment (per sample, stateless).

The encoder learns on free pairs (G(z), z) but meets camera frames at the kiosk: a garment held a little off
centre, nearer or farther than the model's framing, on a shop background, under another white balance. So each
generated picture is zoomed (0.75x..1.15x) and shifted onto a random background (a colour with a gradient and
noise), and gets mild exposure, contrast and white-balance changes plus sensor noise. Colour changes stay small
on purpose: the garment's colour is what the shopper wants back, so the encoder must not learn to ignore it.
Every draw is a stateless function of a seed tensor (the step), as in `trainer.diffaugment`.
"""

from __future__ import annotations

import tensorflow as tf

ZOOM_RANGE = (0.75, 1.15)  # garment size relative to the model's framing
SHIFT_FRACTION = 0.12  # largest offset of the garment's centre, as a fraction of the side
BRIGHTNESS = 0.08  # +- added to [-1, 1] pixels
CONTRAST = (0.9, 1.1)
WHITE_BALANCE = 0.05  # per-channel gain 1 +- this
NOISE_STD = 0.02
_OUTSIDE = -3.0  # crop_and_resize's fill outside the image, replaced by the background


def _uniform(seed: tf.Tensor, shape, lo: float, hi: float) -> tf.Tensor:
    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi)


def _backgrounds(n: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
    """n random backgrounds in [-1, 1]: a colour, a linear gradient to a second colour, fine noise."""
    seeds = tf.random.experimental.stateless_split(seed, 4)
    a = _uniform(seeds[0], (n, 1, 1, 3), -1.0, 1.0)
    b = _uniform(seeds[1], (n, 1, 1, 3), -1.0, 1.0)
    angle = _uniform(seeds[2], (n, 1, 1, 1), 0.0, 6.2831853)
    ramp = tf.linspace(0.0, 1.0, size)
    yy, xx = tf.meshgrid(ramp, ramp, indexing="ij")
    t = tf.cos(angle) * xx[None, :, :, None] + tf.sin(angle) * yy[None, :, :, None]
    t = (t - tf.reduce_min(t, axis=[1, 2], keepdims=True)) / (
        tf.reduce_max(t, axis=[1, 2], keepdims=True) - tf.reduce_min(t, axis=[1, 2], keepdims=True) + 1e-6)
    noise = 0.05 * tf.random.stateless_normal((n, size, size, 3), seed=seeds[3])
    return tf.clip_by_value(a + (b - a) * t + noise, -1.0, 1.0)


def reframe(x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Zoom and shift each picture (N, S, S, 3) in [-1, 1]; what falls outside shows a random background."""
    n, size = tf.shape(x)[0], x.shape[1]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    zoom = _uniform(seeds[0], (n,), *ZOOM_RANGE)
    half = 0.5 / zoom  # half the crop box side, in image units: a zoom below 1 reaches outside the image
    cy = 0.5 + _uniform(seeds[1], (n,), -SHIFT_FRACTION, SHIFT_FRACTION)
    cx = 0.5 + _uniform(seeds[2], (n,), -SHIFT_FRACTION, SHIFT_FRACTION)
    boxes = tf.stack([cy - half, cx - half, cy + half, cx + half], axis=1)
    out = tf.image.crop_and_resize(x, boxes, tf.range(n), (size, size), extrapolation_value=_OUTSIDE)
    outside = tf.cast(out < _OUTSIDE + 1.0, tf.float32)
    # Bilinear sampling at the border mixes image and fill: where any channel is outside, take the background.
    outside = tf.reduce_max(outside, axis=-1, keepdims=True)
    return outside * _backgrounds(n, size, seeds[3]) + (1.0 - outside) * out


def photometric(x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """Mild exposure, contrast and white-balance changes and sensor noise, per picture."""
    n, size = tf.shape(x)[0], x.shape[1]
    seeds = tf.random.experimental.stateless_split(seed, 4)
    x = x + _uniform(seeds[0], (n, 1, 1, 1), -BRIGHTNESS, BRIGHTNESS)
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    x = (x - mean) * _uniform(seeds[1], (n, 1, 1, 1), *CONTRAST) + mean
    x = (x + 1.0) * _uniform(seeds[2], (n, 1, 1, 3), 1.0 - WHITE_BALANCE, 1.0 + WHITE_BALANCE) - 1.0
    x = x + NOISE_STD * tf.random.stateless_normal((n, size, size, 3), seed=seeds[3])
    return tf.clip_by_value(x, -1.0, 1.0)


def camera_like(x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """`reframe` then `photometric`: a generated design as the kiosk's camera might see it."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    return photometric(reframe(x, seeds[0]), seeds[1])
