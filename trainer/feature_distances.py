"""Sample-quality metrics on feature arrays (NumPy/SciPy only; no TensorFlow).

All functions take features as float arrays of shape (N, D) — in Atelier, the garment feature network's pooled
layer (`trainer.features`) — and every headline number comes with a spread:

- FCD, the Fréchet distance between Gaussians fitted to two feature sets (FID's formula in our feature space):
  ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)). Biased at small N: compare at equal sample sizes.
  `frechet_distance_from_stats` takes the matrix square root with `scipy.linalg.sqrtm`; `frechet_distance`
  computes the same trace from the samples through a nuclear norm (exact, real, faster).
  Spread: standard deviation over bootstrap resamples of both sets.
- KID, the unbiased squared MMD with the cubic polynomial kernel k(x, y) = (x.y / D + 1)^3 (Binkowski et al.
  2018), averaged over random subsets of at most 1000 per set; spread: std over the subsets. Unbiased, so it can
  be compared across sample sizes, and it can come out slightly negative for identical distributions.
- Improved precision and recall (Kynkäänniemi et al. 2019), k = 3: each sample's k-th nearest-neighbour
  distance within its own set is the radius of a ball; precision is the share of generated samples inside some
  real ball, recall the share of real samples inside some generated ball. Spread: std over random half subsets.
- Data copying (Meehan et al. 2020): the distance from each design to its nearest training sample, compared with
  the same distance for held-out real samples (which the model never saw) by a Mann-Whitney U test.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

K_NEAREST = 3  # neighbourhood size of improved precision/recall (the paper's default)
KID_SUBSET_SIZE = 1000  # samples per set in one KID subset (fewer when a set is smaller)
KID_SUBSETS = 50  # KID subsets averaged
N_BOOTSTRAP = 20  # bootstrap resamples for the FCD spread
PR_SUBSETS = 10  # half-size subsets for the precision/recall spread
COPY_PERCENTILE = 5.0  # a design is flagged when closer to training than this percentile of held-out photos
_CHUNK = 1024  # query rows per distance block (bounds memory at _CHUNK x N floats)


@dataclass(frozen=True)
class Estimate:
    """A metric value with its spread (a standard deviation) and how the spread was measured."""

    value: float
    spread: float
    spread_kind: str  # e.g. "bootstrap std (20)", "std over 50 subsets of 1000"

    def to_json(self) -> dict[str, Any]:
        """As a JSON object {"value", "spread", "spread_kind"}."""
        return {"value": self.value, "spread": self.spread, "spread_kind": self.spread_kind}

    def format(self, digits: int = 3, scale: float = 1.0) -> str:
        """"value ± spread" with `digits` decimals, both multiplied by `scale`."""
        return f"{self.value * scale:.{digits}f} ± {self.spread * scale:.{digits}f}"


def _check(features: np.ndarray, name: str, min_rows: int = 2) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, D), got shape {x.shape}")
    if len(x) < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples, got {len(x)}")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} has NaN or infinite values")
    return x


def _check_pair(a: np.ndarray, b: np.ndarray, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a, b = _check(a, "first feature set", min_rows), _check(b, "second feature set", min_rows)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature sets differ in width: {a.shape[1]} vs {b.shape[1]}")
    return a, b


def frechet_distance_from_stats(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b).

    Singular covariances (fewer samples than feature dimensions) are handled: if the matrix square root of
    cov_a @ cov_b is not finite, a small multiple of the identity is added to both (as pytorch-fid does); the
    tiny imaginary part that `sqrtm` returns for a nearly singular product is numerical noise and dropped. The
    result is clamped at 0 (the true distance is never negative; rounding can make it -1e-6).
    """
    from scipy import linalg

    diff = mu_a - mu_b
    with warnings.catch_warnings():
        # "Matrix is singular": expected with fewer samples than dimensions, and handled below.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():
            log.warning("Fréchet distance: singular covariance product; adding 1e-6 to the diagonals")
            offset = np.eye(len(cov_a)) * 1e-6
            covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    if np.iscomplexobj(covmean):
        imag = float(np.max(np.abs(covmean.imag)))
        if imag > 1e-3 * max(1.0, float(np.max(np.abs(covmean.real)))):
            log.warning("Fréchet distance: sqrtm left an imaginary part of %.3g; using the real part", imag)
        covmean = covmean.real
    value = float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(covmean))
    return max(value, 0.0)


def _gram_factor(x: np.ndarray) -> np.ndarray:
    """F (k, D) with F^T F = x^T x: x itself when it has fewer rows than columns, else from eigh(x^T x)."""
    from scipy import linalg

    if len(x) <= x.shape[1]:
        return x
    w, v = linalg.eigh(x.T @ x, check_finite=False)
    return np.sqrt(np.maximum(w, 0.0))[:, None] * v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets `a` (N, D) and `b` (M, D).

    The trace of the matrix square root is taken without `sqrtm`: write each covariance as S = F^T F (F the
    centred samples / sqrt(N - 1) when N <= D, else from S's eigendecomposition). The non-zero eigenvalues of
    S_a S_b = F_a^T F_a F_b^T F_b are those of (F_a F_b^T)(F_a F_b^T)^T, so Tr((S_a S_b)^(1/2)) is the sum of the
    singular values of F_a F_b^T (its nuclear norm). Exact, always real, also for singular covariances (fewer
    samples than dimensions), and faster than `sqrtm` — which matters for bootstrap spreads.
    `frechet_distance_from_stats` (with sqrtm) gives the same value (tested).
    """
    from scipy import linalg

    a, b = _check_pair(a, b)
    xa = (a - a.mean(0)) / np.sqrt(len(a) - 1)
    xb = (b - b.mean(0)) / np.sqrt(len(b) - 1)
    trace_sqrt = float(linalg.svdvals(_gram_factor(xa) @ _gram_factor(xb).T, check_finite=False).sum())
    diff = a.mean(0) - b.mean(0)
    value = float(diff @ diff + (xa * xa).sum() + (xb * xb).sum() - 2.0 * trace_sqrt)
    return max(value, 0.0)


def fcd(a: np.ndarray, b: np.ndarray, *, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> Estimate:
    """FCD of two feature sets with a bootstrap spread.

    Args:
        a: features (N, D), e.g. real photos.
        b: features (M, D), e.g. designs.
        n_bootstrap: resamples (with replacement, of both sets) for the spread.
        seed: seeds the resampling.

    Returns:
        The distance on the full sets; spread = std of the distance over the resamples.
    """
    a, b = _check_pair(a, b)
    value = frechet_distance(a, b)
    rng = np.random.default_rng(seed)
    boots = [frechet_distance(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))])
             for _ in range(n_bootstrap)]
    return Estimate(value, float(np.std(boots)) if boots else 0.0, f"bootstrap std ({n_bootstrap})")


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD between samples x (m, D) and y (n, D) with the cubic polynomial kernel.

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (m(m-1)) + sum_{i != j} k(y_i, y_j) / (n(n-1)) - 2 sum k(x_i, y_j) / (mn).
    """
    m, n = len(x), len(y)
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kid(a: np.ndarray, b: np.ndarray, *, subset_size: int = KID_SUBSET_SIZE, n_subsets: int = KID_SUBSETS,
        seed: int = 0) -> Estimate:
    """KID: the unbiased cubic-kernel MMD^2 averaged over random subsets.

    Args:
        a: features (N, D).
        b: features (M, D).
        subset_size: samples drawn (without replacement) from each set per subset; capped at min(N, M).
        n_subsets: subsets averaged.
        seed: seeds the subset draws.

    Returns:
        Mean over subsets; spread = std over subsets.
    """
    a, b = _check_pair(a, b)
    rng = np.random.default_rng(seed)
    if a.shape == b.shape and np.array_equal(a, b):
        # One set against itself: the estimator assumes the two samples are independent, and subsets drawn
        # from the same rows share samples (each shared one adds its large self-similarity to the cross term,
        # biasing KID below 0 by O(1/m)). Draw the two sides from disjoint halves instead.
        if len(a) < 4:
            raise ValueError(f"KID of a set against itself needs at least 4 samples, got {len(a)}")
        m = min(subset_size, len(a) // 2)
        values = []
        for _ in range(n_subsets):
            order = rng.permutation(len(a))
            values.append(mmd2_unbiased(a[order[:m]], a[order[m:2 * m]]))
        return Estimate(float(np.mean(values)), float(np.std(values)),
                        f"std over {n_subsets} disjoint subset pairs of {m}")
    m = min(subset_size, len(a), len(b))
    values = [mmd2_unbiased(a[rng.choice(len(a), m, replace=False)], b[rng.choice(len(b), m, replace=False)])
              for _ in range(n_subsets)]
    return Estimate(float(np.mean(values)), float(np.std(values)), f"std over {n_subsets} subsets of {m}")


def pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(x), len(y)) via |x|^2 + |y|^2 - 2 x.y (clamped at 0)."""
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.sqrt(np.maximum(d2, 0.0))


def knn_radii(x: np.ndarray, k: int = K_NEAREST) -> np.ndarray:
    """Distance from each row of x to its k-th nearest other row (the sample itself excluded)."""
    x = _check(x, "features", k + 1)
    radii = np.empty(len(x))
    for start in range(0, len(x), _CHUNK):
        d = pairwise_distances(x[start:start + _CHUNK], x)
        rows = np.arange(len(d))
        d[rows, start + rows] = np.inf  # not its own neighbour
        radii[start:start + len(d)] = np.partition(d, k - 1, axis=1)[:, k - 1]
    return radii


def manifold_coverage(query: np.ndarray, support: np.ndarray, radii: np.ndarray) -> float:
    """Share of query rows within radii[j] of some support row j (distance <= radius)."""
    inside = 0
    for start in range(0, len(query), _CHUNK):
        d = pairwise_distances(query[start:start + _CHUNK], support)
        inside += int(np.any(d <= radii[None, :], axis=1).sum())
    return inside / len(query)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = K_NEAREST) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of `fake` against `real`.

    Returns:
        (precision: share of fake samples inside the real manifold, recall: share of real samples inside the
        fake manifold), each manifold being the union of k-NN balls around its samples.
    """
    real, fake = _check_pair(real, fake, k + 1)
    precision = manifold_coverage(fake, real, knn_radii(real, k))
    recall = manifold_coverage(real, fake, knn_radii(fake, k))
    return precision, recall


def precision_recall_spread(real: np.ndarray, fake: np.ndarray, *, k: int = K_NEAREST,
                            n_subsets: int = PR_SUBSETS, seed: int = 0) -> tuple[Estimate, Estimate]:
    """Precision and recall on the full sets, each with the std over random half-size subsets of both sets.

    Half-size subsets have larger k-NN balls, so their values lean towards 1; the std is a guide to how much
    the numbers move with the sample, not an exact standard error.
    """
    real, fake = _check_pair(real, fake, k + 1)
    precision, recall = precision_recall(real, fake, k)
    rng = np.random.default_rng(seed)
    half_r, half_f = max(k + 1, len(real) // 2), max(k + 1, len(fake) // 2)
    subsets = [precision_recall(real[rng.choice(len(real), half_r, replace=False)],
                                fake[rng.choice(len(fake), half_f, replace=False)], k) for _ in range(n_subsets)]
    kind = f"std over {n_subsets} half-size subsets"
    p_std = float(np.std([s[0] for s in subsets])) if subsets else 0.0
    r_std = float(np.std([s[1] for s in subsets])) if subsets else 0.0
    return Estimate(precision, p_std, kind), Estimate(recall, r_std, kind)


def nearest(query: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each query row, the index of its nearest reference row and the distance to it."""
    query, reference = _check_pair(query, reference, 1)
    index = np.empty(len(query), dtype=np.int64)
    dist = np.empty(len(query))
    for start in range(0, len(query), _CHUNK):
        d = pairwise_distances(query[start:start + _CHUNK], reference)
        j = np.argmin(d, axis=1)
        index[start:start + len(d)] = j
        dist[start:start + len(d)] = d[np.arange(len(d)), j]
    return index, dist


@dataclass(frozen=True)
class CopyCheck:
    """The data-copying test: designs' nearest training samples against held-out photos' nearest ones."""

    nearest_train: np.ndarray  # (n,) index of each design's nearest training sample
    design_dist: np.ndarray  # (n,) distance to it
    heldout_dist: np.ndarray  # (m,) each held-out photo's distance to its nearest training sample
    share_closer: Estimate  # P(design distance < held-out distance); 0.5 = no copying, > 0.5 = closer than new photos
    z_u: float  # Meehan et al.'s Z_U (Mann-Whitney U, normalised): clearly negative = data copying
    p_value: float  # one-sided Mann-Whitney p-value that designs are closer to training than held-out photos
    threshold: float  # the COPY_PERCENTILE-th percentile of heldout_dist
    flagged: np.ndarray  # indices of designs closer than `threshold`, closest first

    @property
    def flagged_share(self) -> float:
        """Share of designs flagged (about COPY_PERCENTILE / 100 for a model that does not copy)."""
        return len(self.flagged) / len(self.design_dist)


def data_copying(designs: np.ndarray, heldout: np.ndarray, train: np.ndarray, *,
                 percentile: float = COPY_PERCENTILE, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0) -> CopyCheck:
    """Meehan et al. (2020)'s test, on one cell: are designs closer to the training set than new photos are?

    Args:
        designs: features of generated designs (n, D).
        heldout: features of real photos the model never trained on (m, D).
        train: features of the training photos (N, D).
        percentile: designs closer to a training photo than this percentile of held-out photos are flagged.
        n_bootstrap: resamples for the spread of `share_closer`.
        seed: seeds the resampling.
    """
    from scipy import stats

    designs, heldout = _check_pair(designs, heldout, 1)
    train = _check(train, "training features", 1)
    index, d_gen = nearest(designs, train)
    _, d_held = nearest(heldout, train)
    n, m = len(d_gen), len(d_held)
    # U counts pairs where the design is farther than the held-out photo (ties count half).
    u = stats.mannwhitneyu(d_gen, d_held, alternative="less", method="asymptotic")
    u_stat = float(u.statistic)
    z_u = (u_stat - n * m / 2.0) / np.sqrt(n * m * (n + m + 1) / 12.0)
    share = 1.0 - u_stat / (n * m)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_bootstrap):
        g, h = d_gen[rng.integers(0, n, n)], d_held[rng.integers(0, m, m)]
        boots.append(1.0 - float(stats.mannwhitneyu(g, h, method="asymptotic").statistic) / (n * m))
    threshold = float(np.percentile(d_held, percentile))
    flagged = np.flatnonzero(d_gen < threshold)
    flagged = flagged[np.argsort(d_gen[flagged], kind="stable")]
    return CopyCheck(index, d_gen, d_held, Estimate(share, float(np.std(boots)), f"bootstrap std ({n_bootstrap})"),
                     float(z_u), float(u.pvalue), threshold, flagged)


def class_share(probs: np.ndarray, targets: np.ndarray) -> Estimate:
    """Share of samples whose most probable class is the target, with its binomial standard error.

    Args:
        probs: class probabilities (N, C).
        targets: the requested class index per sample (N,).
    """
    probs, targets = np.asarray(probs), np.asarray(targets)
    if probs.ndim != 2 or targets.shape != (len(probs),) or len(probs) == 0:
        raise ValueError(f"need probs (N, C) and N targets, got {probs.shape} and {targets.shape}")
    p = float(np.mean(probs.argmax(axis=1) == targets))
    return Estimate(p, float(np.sqrt(p * (1.0 - p) / len(probs))), "binomial standard error")
