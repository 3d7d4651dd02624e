"""One latent prior: the kiosk's NumPy draw (edge.designs.sample_prior) and the trainer's stateless TF draw
(trainer.gan.sample_latents) sample the same distribution for both settings of z_distribution."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from edge.designs import sample_prior
from trainer.config import preset
from trainer.gan import sample_latents


@pytest.mark.parametrize("distribution", ["normal", "uniform"])
def test_numpy_and_tensorflow_draw_the_same_prior(distribution: str) -> None:
    cfg = preset("edge", z_distribution=distribution)
    a = sample_prior(4000, cfg.z_dim, distribution, seed=3)
    b = sample_latents(cfg, 4000, tf.constant([3, 0], tf.int64)).numpy()
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    for x in (a, b):
        if distribution == "uniform":
            assert x.min() >= -1.0 and x.max() <= 1.0
            assert x.std() == pytest.approx(1 / np.sqrt(3), abs=0.01)
        else:
            assert x.std() == pytest.approx(1.0, abs=0.01)
            assert np.abs(x).max() > 3.5  # tails, not a clipped draw
        assert x.mean() == pytest.approx(0.0, abs=0.01)
    # Same distribution, quantile by quantile.
    qs = np.linspace(0.05, 0.95, 19)
    assert np.quantile(a, qs) == pytest.approx(np.quantile(b, qs), abs=0.03)


def test_a_longer_draw_extends_a_shorter_one() -> None:
    assert np.array_equal(sample_prior(5, 8, "normal", 1), sample_prior(9, 8, "normal", 1)[:5])
