"""DiffAugment (Zhao et al. 2020, mit-han-lab/data-efficient-gans `DiffAugment_tf.py`) with stateless randomness.

One function over a registry: `diff_augment(x, policy, seed)`. Every draw is per sample, as in the reference code
(one draw per batch lets the cutout squares leak into G). Randomness comes from a stateless seed, so a training step
is a pure function of (weights, step) and a resumed run repeats the uninterrupted one.
Images are in [-1, 1], NHWC. Under tf.distribute a replica holds rows [start, start + b) of a global batch of
`total`: pass rows=(start, total) and every per-sample draw is made for the whole global batch and sliced, so the
replicas together augment exactly as one device augmenting the global batch.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def per_sample_uniform(x, seed, rows, tail: list[int], lo=0.0, hi=1.0, dtype=tf.float32):
    """Uniform draws of shape [batch of x, *tail]; with rows=(start, total), rows [start, start+b) of a [total] draw."""
    b = tf.shape(x)[0]
    if rows is None:
        return tf.random.stateless_uniform([b, *tail], seed=seed, minval=lo, maxval=hi, dtype=dtype)
    start, total = rows
    draw = tf.random.stateless_uniform([total, *tail], seed=seed, minval=lo, maxval=hi, dtype=dtype)
    return draw[start:start + b]


def _brightness(x, seed, rows=None):
    return x + (per_sample_uniform(x, seed, rows, [1, 1, 1]) - 0.5)


def _saturation(x, seed, rows=None):
    mean = tf.reduce_mean(x, axis=3, keepdims=True)
    return (x - mean) * (per_sample_uniform(x, seed, rows, [1, 1, 1]) * 2.0) + mean


def _contrast(x, seed, rows=None):
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * (per_sample_uniform(x, seed, rows, [1, 1, 1]) + 0.5) + mean


def _translation(x, seed, rows=None, ratio: float = 0.125):
    """Shift each image by up to ratio * size pixels in x and y, zero (mid-grey) padded."""
    h, w = x.shape[1], x.shape[2]
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    ty = per_sample_uniform(x, seeds[0], rows, [1], -sh, sh + 1, tf.int32)
    tx = per_sample_uniform(x, seeds[1], rows, [1], -sw, sw + 1, tf.int32)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])  # index 0 and size+1 are the zero border
    rows = tf.clip_by_value(tf.range(h)[None, :] + ty + 1, 0, h + 1)  # (B, H)
    cols = tf.clip_by_value(tf.range(w)[None, :] + tx + 1, 0, w + 1)  # (B, W)
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


def _cutout(x, seed, rows=None, ratio: float = 0.5):
    """Zero one square of ratio * size per image at a random centre."""
    h, w = x.shape[1], x.shape[2]
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    cy = per_sample_uniform(x, seeds[0], rows, [1, 1], 0, h + (1 - ch % 2), tf.int32)
    cx = per_sample_uniform(x, seeds[1], rows, [1, 1], 0, w + (1 - cw % 2), tf.int32)
    yy = tf.range(h)[None, :, None]
    xx = tf.range(w)[None, None, :]
    inside = (
        (yy >= cy - ch // 2) & (yy < cy - ch // 2 + ch) & (xx >= cx - cw // 2) & (xx < cx - cw // 2 + cw)
    )
    return x * tf.cast(~inside, x.dtype)[..., None]


AUGMENT_FNS: dict[str, list[Callable]] = {
    "color": [_brightness, _saturation, _contrast],
    "translation": [_translation],
    "cutout": [_cutout],
}


def parse_policy(policy: str) -> list[str]:
    """Split 'color,translation' into names, rejecting unknown ones."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [p for p in names if p not in AUGMENT_FNS]
    if unknown:
        raise ValueError(f"unknown DiffAugment ops {unknown}; known: {', '.join(AUGMENT_FNS)}")
    return names


def diff_augment(x: tf.Tensor, policy: str, seed: tf.Tensor, rows=None) -> tf.Tensor:
    """Apply the policy's augmentations to a batch, with every draw derived from `seed` (shape [2] int).

    rows: (start, total) when x is rows [start, start + len(x)) of a global batch of `total` (tf.distribute).
    """
    k = 0
    for name in parse_policy(policy):
        for fn in AUGMENT_FNS[name]:
            x = fn(x, tf.random.experimental.stateless_fold_in(seed, k), rows)
            k += 1
    return x
