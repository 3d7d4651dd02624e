"""trainer.feature_distances on cases whose answers are known by hand or by construction."""

import itertools

import numpy as np
import pytest

from trainer import feature_distances as fd


def _gaussian(n: int, d: int = 16, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, d)) + shift


def test_fcd_of_identical_sets_is_zero_even_with_singular_covariance():
    # 40 samples in 64 dimensions: the covariance is singular, the usual trouble spot for sqrtm.
    a = _gaussian(40, 64)
    assert fd.frechet_distance(a, a.copy()) == pytest.approx(0.0, abs=1e-6)
    est = fd.fcd(a, a.copy())
    assert est.value == pytest.approx(0.0, abs=1e-6)
    assert est.spread >= 0.0


def test_fcd_of_a_translated_copy_is_the_squared_shift():
    # Same covariance, means differ by s: the trace term vanishes and FD = |s|^2.
    a = _gaussian(300, 8)
    s = np.linspace(-1.0, 2.0, 8)
    assert fd.frechet_distance(a, a + s) == pytest.approx(float(s @ s), rel=1e-6)


def test_fcd_matches_the_closed_form_for_diagonal_covariances():
    # The 8 corners of a cube: mean 0, sample covariance exactly (8/7) I. b = 2a + c has covariance 4(8/7) I, so
    # FD = |c|^2 + Tr(S + 4S - 2 * 2S) = |c|^2 + 3 * 8/7.
    a = np.array(list(itertools.product([-1.0, 1.0], repeat=3)))
    c = np.array([0.5, -1.0, 2.0])
    assert fd.frechet_distance(a, 2 * a + c) == pytest.approx(float(c @ c) + 3 * 8 / 7, rel=1e-9)


@pytest.mark.parametrize("n_a, n_b, d", [(30, 25, 64), (400, 300, 32)])  # singular and full-rank covariances
def test_sample_route_agrees_with_sqrtm(n_a, n_b, d):
    rng = np.random.default_rng(n_a)
    a = np.abs(rng.standard_normal((n_a, d)))
    b = 1.5 * np.abs(rng.standard_normal((n_b, d))) + 0.2
    via_sqrtm = fd.frechet_distance_from_stats(a.mean(0), np.cov(a, rowvar=False), b.mean(0),
                                                    np.cov(b, rowvar=False))
    assert fd.frechet_distance(a, b) == pytest.approx(via_sqrtm, rel=1e-6)


def test_fcd_grows_with_the_shift():
    a, b = _gaussian(200, seed=1), _gaussian(200, seed=2)
    values = [fd.frechet_distance(a, b + s) for s in (0.0, 0.5, 1.0, 2.0)]
    assert values == sorted(values)
    assert values[0] < values[-1] / 10


def test_mmd_by_hand():
    # k(x, y) = (x y / 1 + 1)^3 with x = 0, 0 and y = 1, 1: kxx = 1, kyy = 8, kxy = 1 -> 1 + 8 - 2 * 1 = 7.
    x, y = np.zeros((2, 1)), np.ones((2, 1))
    assert fd.mmd2_unbiased(x, y) == pytest.approx(7.0)


def test_kid_is_near_zero_for_the_same_distribution_and_larger_for_a_shift():
    a, b = _gaussian(400, seed=3), _gaussian(400, seed=4)
    same = fd.kid(a, b, subset_size=200, n_subsets=20)
    shifted = fd.kid(a, b + 0.5, subset_size=200, n_subsets=20)
    identical = fd.kid(a, a.copy(), subset_size=200, n_subsets=20)
    assert abs(same.value) < 4 * same.spread + 1e-3
    assert abs(identical.value) < 4 * identical.spread + 1e-3
    assert shifted.value > 10 * max(abs(same.value), same.spread)
    assert "20 subsets of 200" in shifted.spread_kind
    assert "disjoint" in identical.spread_kind


def test_kid_caps_the_subset_size_at_the_smaller_set():
    est = fd.kid(_gaussian(30), _gaussian(500, seed=1), subset_size=1000, n_subsets=3)
    assert "of 30" in est.spread_kind


def test_knn_radii_on_a_line():
    x = np.arange(10, dtype=float)[:, None]
    radii = fd.knn_radii(x, k=3)
    assert radii[0] == pytest.approx(3.0)  # neighbours 1, 2, 3
    assert radii[5] == pytest.approx(2.0)  # 4 and 6 at 1, then 3 or 7 at 2
    assert radii[9] == pytest.approx(3.0)


def test_precision_and_recall_of_a_set_against_itself_are_one():
    a = _gaussian(120, 32)
    p, r = fd.precision_recall(a, a.copy())
    assert (p, r) == (1.0, 1.0)
    pe, re_ = fd.precision_recall_spread(a, a.copy(), n_subsets=3)
    assert (pe.value, re_.value) == (1.0, 1.0)


def test_precision_and_recall_of_far_apart_sets_are_zero():
    p, r = fd.precision_recall(_gaussian(100), _gaussian(100, seed=1, shift=50.0))
    assert (p, r) == (0.0, 0.0)


def test_mode_collapse_keeps_precision_and_loses_recall():
    # Real data has two far-apart modes; the "generator" covers only the first.
    rng = np.random.default_rng(5)
    mode_a = rng.standard_normal((150, 4))
    mode_b = rng.standard_normal((150, 4)) + 40.0
    real = np.concatenate([mode_a, mode_b])
    fake = rng.standard_normal((300, 4))
    p, r = fd.precision_recall(real, fake)
    assert p > 0.9
    assert 0.3 < r < 0.6


def test_half_the_designs_off_the_data_gives_half_precision():
    real = _gaussian(200, 4)
    fake = np.concatenate([_gaussian(100, 4, seed=9), _gaussian(100, 4, seed=10, shift=60.0)])
    p, _ = fd.precision_recall(real, fake)
    assert 0.4 < p <= 0.5


def test_planted_training_copy_is_flagged():
    train = _gaussian(300, 16, seed=11)
    heldout = _gaussian(100, 16, seed=12)
    designs = _gaussian(100, 16, seed=13)
    designs[42] = train[17]  # a design that is a training photo
    check = fd.data_copying(designs, heldout, train)
    assert check.flagged[0] == 42
    assert check.nearest_train[42] == 17
    assert check.design_dist[42] == pytest.approx(0.0, abs=1e-6)
    # Fresh samples from the data distribution behave like held-out photos.
    assert 0.35 < check.share_closer.value < 0.65
    assert check.flagged_share < 0.2


def test_a_model_that_copies_everything_is_caught():
    rng = np.random.default_rng(14)
    train = _gaussian(300, 16, seed=15)
    heldout = _gaussian(100, 16, seed=16)
    designs = train[rng.choice(300, 100, replace=False)] + 0.01 * rng.standard_normal((100, 16))
    check = fd.data_copying(designs, heldout, train)
    assert check.share_closer.value > 0.95
    assert check.z_u < -5
    assert check.p_value < 1e-6
    assert check.flagged_share > 0.9


def test_class_share_and_its_error():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    est = fd.class_share(probs, np.array([0, 1, 1, 1]))
    assert est.value == pytest.approx(0.75)
    assert est.spread == pytest.approx(np.sqrt(0.75 * 0.25 / 4))


@pytest.mark.parametrize(
    "a, b, message",
    [
        (np.zeros(5), np.zeros((5, 2)), "2-D"),
        (np.zeros((1, 2)), np.zeros((5, 2)), "at least 2"),
        (np.zeros((5, 2)), np.zeros((5, 3)), "width"),
        (np.full((5, 2), np.nan), np.zeros((5, 2)), "NaN"),
    ],
)
def test_bad_feature_arrays_are_refused(a, b, message):
    with pytest.raises(ValueError, match=message):
        fd.frechet_distance(a, b)
