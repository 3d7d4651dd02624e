"""DiffAugment (Zhao et al. 2020, mit-han-lab/data-efficient-gans `DiffAugment_tf.py`) with stateless randomness.

One function over a registry: `diff_augment(x, policy, seed)`. Every draw is per sample, as in the reference code
(one draw per batch lets the cutout squares leak into G). Randomness comes from a stateless seed, so a training step
is a pure function of (weights, step) and a resumed run repeats the uninterrupted one.
Images are in [-1, 1], NHWC.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf


def _uniform(seed, shape, lo=0.0, hi=1.0):
    return tf.random.stateless_uniform(shape, seed=seed, minval=lo, maxval=hi)


def _brightness(x, seed):
    return x + (_uniform(seed, [tf.shape(x)[0], 1, 1, 1]) - 0.5)


def _saturation(x, seed):
    mean = tf.reduce_mean(x, axis=3, keepdims=True)
    return (x - mean) * (_uniform(seed, [tf.shape(x)[0], 1, 1, 1]) * 2.0) + mean


def _contrast(x, seed):
    mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
    return (x - mean) * (_uniform(seed, [tf.shape(x)[0], 1, 1, 1]) + 0.5) + mean


def _translation(x, seed, ratio: float = 0.125):
    """Shift each image by up to ratio * size pixels in x and y, zero (mid-grey) padded."""
    b, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    ty = tf.random.stateless_uniform([b, 1], seed=seeds[0], minval=-sh, maxval=sh + 1, dtype=tf.int32)
    tx = tf.random.stateless_uniform([b, 1], seed=seeds[1], minval=-sw, maxval=sw + 1, dtype=tf.int32)
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])  # index 0 and size+1 are the zero border
    rows = tf.clip_by_value(tf.range(h)[None, :] + ty + 1, 0, h + 1)  # (B, H)
    cols = tf.clip_by_value(tf.range(w)[None, :] + tx + 1, 0, w + 1)  # (B, W)
    out = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(out, cols, axis=2, batch_dims=1)


def _cutout(x, seed, ratio: float = 0.5):
    """Zero one square of ratio * size per image at a random centre."""
    b, h, w = tf.shape(x)[0], x.shape[1], x.shape[2]
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    cy = tf.random.stateless_uniform([b, 1, 1], seed=seeds[0], minval=0, maxval=h + (1 - ch % 2), dtype=tf.int32)
    cx = tf.random.stateless_uniform([b, 1, 1], seed=seeds[1], minval=0, maxval=w + (1 - cw % 2), dtype=tf.int32)
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


def diff_augment(x: tf.Tensor, policy: str, seed: tf.Tensor) -> tf.Tensor:
    """Apply the policy's augmentations to a batch, with every draw derived from `seed` (shape [2] int)."""
    k = 0
    for name in parse_policy(policy):
        for fn in AUGMENT_FNS[name]:
            x = fn(x, tf.random.experimental.stateless_fold_in(seed, k))
            k += 1
    return x
