"""The realism instruments (trainer.realism) on pictures whose answer is known: procedural garments, their blocky
and gridded copies, identical and separable feature sets, collapsed and varied design sets."""

from __future__ import annotations

import numpy as np
import pytest

from edge.procedural_garments import render_garment
from trainer import realism


@pytest.fixture(scope="module")
def garments() -> np.ndarray:
    rng = np.random.default_rng(0)
    kinds = ("t-shirt", "dress", "trousers")
    return np.stack([render_garment(kinds[i % 3], 64, rng) for i in range(48)])


def test_blocky_and_grid_copies_are_what_they_say(garments: np.ndarray) -> None:
    block = realism.blocky(garments, low_px=16)
    # Every 4x4 block of a 16 px -> 64 px nearest blow-up is one colour.
    tiles = block.reshape(len(block), 16, 4, 16, 4, 3)
    assert (tiles == tiles[:, :, :1, :, :1, :]).all()
    grid = realism.with_grid(garments, period_px=8, strength=12.0)
    diff = garments.astype(int) - grid.astype(int)
    assert diff.min() >= 0 and diff.max() <= 12
    assert (diff[:, 1:8, 1:8] == 0).all()  # only the grid lines changed
    assert diff[:, ::8].mean() > 5


def test_radial_spectrum_of_a_flat_picture_is_empty_and_of_noise_is_flat() -> None:
    flat = np.full((4, 32, 32, 3), 128, np.uint8)
    assert realism.radial_spectra(flat).max() < -100  # nothing but the -120 dB floor
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8)
    curve = realism.radial_spectra(noise).mean(axis=0)
    assert curve.shape == (32,)
    assert np.ptp(curve[4:28]) < 3.0  # white noise: the same power at every frequency (within 3 dB)


def test_the_spectrum_sees_blockiness_and_the_grid_peak_sees_a_grid(garments: np.ndarray) -> None:
    ref = realism.spectra(garments)
    same = realism.spectrum_report(garments, ref)
    assert same["spectrum_distance_db"] == pytest.approx(0.0, abs=1e-6)
    assert same["grid_peak_db"] == pytest.approx(0.0, abs=1e-6)
    block = realism.spectrum_report(realism.blocky(garments, 16), ref)
    assert block["spectrum_distance_db"] > 5.0
    assert block["grid_peak_db"] > 3.0  # a 4 px block pattern is a periodic artefact too
    grid = realism.spectrum_report(realism.with_grid(garments, 8, 12.0), ref)
    assert grid["grid_peak_db"] > 10.0
    assert grid["spectrum_distance_db"] < block["spectrum_distance_db"]
    with pytest.raises(ValueError, match="differ in size"):
        realism.spectrum_report(garments[:, :32, :32], ref)


def test_two_sample_test_is_at_chance_on_one_distribution_and_near_one_on_two() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((120, 20)), rng.standard_normal((120, 20))
    same = realism.two_sample_test(a, b, seed=0)
    assert 0.35 <= same.accuracy <= 0.65
    assert same.ci95[0] < 0.5 < same.ci95[1]
    assert same.p_value > 0.01
    shifted = realism.two_sample_test(a + 1.5, b, seed=0)
    assert shifted.accuracy > 0.9
    assert shifted.ci95[0] > 0.8 and shifted.p_value < 1e-6
    # Graded: a smaller shift is told apart less often.
    mid = realism.two_sample_test(a + 0.3, b, seed=0)
    assert same.accuracy < mid.accuracy < shifted.accuracy
    # Fixed seeds: the same answer twice.
    assert realism.two_sample_test(a + 0.3, b, seed=0) == mid
    with pytest.raises(ValueError, match="at least"):
        realism.two_sample_test(a[:3], b, seed=0)
    with pytest.raises(ValueError, match="one width"):
        realism.two_sample_test(a, b[:, :5], seed=0)


def test_logistic_regression_separates_a_separable_set() -> None:
    x = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    y = np.array([0.0, 0.0, 1.0, 1.0])
    w = realism.fit_logistic(x, y, ridge=0.01)
    assert w[0] > 1.0 and abs(w[1]) < 1e-3


def test_diversity_counts_near_duplicates() -> None:
    rng = np.random.default_rng(3)
    photos = rng.standard_normal((80, 16))
    varied = realism.diversity_report(rng.standard_normal((200, 16)), photos, seed=0)
    assert varied["near_duplicate_share"] < 0.15
    assert varied["pairwise_distance_ratio"] == pytest.approx(1.0, abs=0.1)
    collapsed = np.repeat(rng.standard_normal((5, 16)), 40, axis=0) + 1e-3 * rng.standard_normal((200, 16))
    report = realism.diversity_report(collapsed, photos, seed=0)
    assert report["near_duplicate_share"] > 0.9
    assert report["subset_size"] == 80
    with pytest.raises(ValueError):
        realism.diversity_report(collapsed[:2], photos)


def test_bad_pictures_are_refused() -> None:
    with pytest.raises(ValueError, match="uint8"):
        realism.radial_spectra(np.zeros((4, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="square"):
        realism.radial_spectra(np.zeros((4, 32, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="at least 2"):
        realism.radial_spectra(np.zeros((1, 32, 32, 3), np.uint8))
