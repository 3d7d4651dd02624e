"""Network shapes, parameter counts and costs; DiffAugment's per-sample, seeded behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from edge.errors import UserError
from trainer.config import preset
from trainer.diffaugment import diff_augment, parse_policy
from trainer.networks import build_discriminator, build_generator, generator_macs


def test_seed_preset_is_the_papers_model() -> None:
    cfg = preset("seed")
    g, d = build_generator(cfg), build_discriminator(cfg)
    assert round(g.count_params() / 1e6, 1) == 24.0
    assert round(d.count_params() / 1e6, 1) == 17.5
    assert g.inputs[0].shape == (None, 100) and g.output.shape == (None, 128, 128, 3)
    assert cfg.z_distribution == "uniform" and cfg.batch_size == 64
    assert (cfg.lr_d, cfg.lr_g, cfg.beta1) == (4e-5, 4e-4, 0.5)
    kernels = [layer.kernel.shape[:2] for layer in g.layers if hasattr(layer, "kernel") and layer.kernel.ndim == 4]
    assert kernels and all(k == (5, 5) for k in kernels)
    bns = [layer for layer in g.layers if isinstance(layer, tf.keras.layers.BatchNormalization)
           or type(layer).__name__ == "BatchNormalization"]
    assert len(bns) == 4 and all(abs(b.epsilon - 5e-5) < 1e-12 for b in bns)


@pytest.mark.parametrize("size", [64, 128])
def test_edge_preset_shapes_and_budget(size: int) -> None:
    cfg = preset("edge", size_px=size)
    g, d = build_generator(cfg), build_discriminator(cfg)
    z = np.random.default_rng(0).standard_normal((2, cfg.z_dim)).astype(np.float32)
    images = g([z], training=False).numpy()
    assert images.shape == (2, size, size, 3) and np.abs(images).max() <= 1.0
    assert d(images, training=False).shape == (2, 1)
    assert generator_macs(g) <= 1_000_000_000  # the kiosk budget: <= 1 GMAC per design
    assert generator_macs(g) * 5 < generator_macs(build_generator(preset("seed")))
    names = {type(layer).__name__ for layer in g.layers}
    assert "LeakyReLU" not in names and "Conv2DTranspose" not in names  # Edge TPU friendly


def test_conditional_networks_take_classes() -> None:
    cfg = preset("edge", size_px=64, conditional=True, class_names=["a", "b", "c"])
    g, d = build_generator(cfg), build_discriminator(cfg)
    z = np.zeros((3, cfg.z_dim), np.float32)
    images = g([z, np.eye(3, dtype=np.float32)], training=False).numpy()
    logits = d([images, np.array([0, 1, 2], np.int32)], training=False).numpy()
    assert logits.shape == (3, 1)
    # The projection term makes the class matter for the same image.
    same = np.repeat(images[:1], 3, axis=0)
    per_class = d([same, np.array([0, 1, 2], np.int32)], training=False).numpy().ravel()
    assert len(set(np.round(per_class, 6))) == 3


def test_tiny_preset_is_tiny() -> None:
    cfg = preset("tiny")
    assert build_generator(cfg).count_params() < 10_000 and build_discriminator(cfg).count_params() < 10_000


def test_bad_preset_settings_are_user_errors() -> None:
    with pytest.raises(UserError, match="unknown preset"):
        preset("huge")
    with pytest.raises(UserError, match="--size must be one of"):
        preset("edge", size_px=96)
    with pytest.raises(UserError, match="unknown config fields"):
        preset("edge", widths=3)


def test_diffaugment_is_per_sample_seeded_and_shape_preserving() -> None:
    x = tf.ones((8, 32, 32, 3)) * 0.5
    seed = tf.constant([1, 2], tf.int64)
    a = diff_augment(x, "color,translation,cutout", seed).numpy()
    b = diff_augment(x, "color,translation,cutout", seed).numpy()
    c = diff_augment(x, "color,translation,cutout", tf.constant([1, 3], tf.int64)).numpy()
    assert a.shape == x.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    cut = diff_augment(x, "cutout", seed).numpy()
    masks = cut[..., 0] == 0.0
    # Each image loses one half-size square (16x16 = 256 px, less where it crosses the border), at its own place.
    assert all(0 < m.sum() <= 256 for m in masks)
    assert len({m.tobytes() for m in masks}) > 1
    shifted = diff_augment(x, "translation", seed).numpy()
    assert set(np.unique(shifted)) <= {0.0, 0.5}  # content moved, border zero-padded
    with pytest.raises(ValueError, match="unknown DiffAugment ops"):
        parse_policy("color,blur")
