"""Numbers that see what a person sees in a set of designs (NumPy/SciPy only; no TensorFlow).

The Fréchet and kernel distances of `trainer.feature_distances` compare feature statistics; they can call blocky,
gridded designs "nearly real" when the feature network averages the defects away. This module adds three instruments:

- **Artefacts: the power spectrum** (Durall et al. 2020, "Watch your up-convolution"). Each picture's luma is
  Hann-windowed, Fourier-transformed and its power averaged over rings of equal frequency (the azimuthal average),
  in decibels. `spectrum_distance_db` is the mean absolute gap between the designs' mean curve and the photos'
  over the upper half of the frequencies (blockiness removes high-frequency power; a grid adds it).
  `grid_peak_db`: how far the power at the frequencies of a 2, 4, 8 or 16 px period on the two axes stands above
  the median of its ring, the largest of those, designs minus photos — upsampling by nearest neighbour leaves a
  regular pattern with exactly those periods.
- **Diversity**: the mean pairwise feature distance of the designs against that of photos (1 = as varied as
  photos), and the share of near-duplicates: designs whose nearest other design (in a random subset as large as
  the photo set) is closer than the 5th percentile of the photos' own nearest-neighbour distances (photos score
  about 0.05 by construction; a collapsing generator much more).
- **A classifier two-sample test** (Lopez-Paz & Oquab 2017): a ridge-regularised logistic regression, trained with
  fixed seeds in 5-fold cross-validation to tell designs from held-out photos, on standardised features of the
  128 px garment network plus the spectrum curve. Its held-out accuracy is 0.5 when the two sets cannot be told
  apart and 1.0 when every picture is told right; the confidence interval is Wilson's for the pooled predictions,
  the p-value a one-sided binomial test against 0.5. A linear classifier with a strong ridge on few photos stays
  graded (it does not reach 1.0 for every imperfect set), which a deep pixel classifier would not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.feature_distances import knn_radii, pairwise_distances

GRID_PERIODS_PX = (2, 4, 8, 16)  # pixel periods an upsampling chain leaves on a 2^k sized picture
NEAR_DUPLICATE_PERCENTILE = 5.0  # a design is a near-duplicate when closer than this percentile of photo NN distances
DIVERSITY_SUBSETS = 10  # random design subsets averaged for the near-duplicate share
TWO_SAMPLE_FOLDS = 5  # cross-validation folds of the classifier test
TWO_SAMPLE_REPEATS = 3  # independent design subsets and fold splits, pooled
TWO_SAMPLE_RIDGE = 10.0  # L2 penalty of the logistic regression (on standardised, PCA-whitened inputs)
TWO_SAMPLE_COMPONENTS = 32  # principal components of the classifier's input, fitted on the training folds only
_LUMA = np.array([0.299, 0.587, 0.114])


def _check_images(images: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 pictures (N, H, W, 3), got {x.dtype} {x.shape}")
    if x.shape[1] != x.shape[2]:
        raise ValueError(f"{name} must be square, got {x.shape[1]}x{x.shape[2]}")
    if len(x) < 2:
        raise ValueError(f"{name} needs at least 2 pictures, got {len(x)}")
    return x


def power_spectra_2d(images: np.ndarray, batch: int = 256) -> np.ndarray:
    """Per-picture 2-D power spectra of the Hann-windowed luma, in dB, zero frequency centred: (N, H, W)."""
    x = _check_images(images, "images")
    side = x.shape[1]
    window = np.outer(np.hanning(side), np.hanning(side))
    out = np.empty(x.shape[:3], dtype=np.float32)
    for start in range(0, len(x), batch):
        luma = x[start:start + batch].astype(np.float64) @ _LUMA / 255.0
        luma -= luma.mean(axis=(1, 2), keepdims=True)
        f = np.fft.fftshift(np.fft.fft2(luma * window), axes=(1, 2))
        out[start:start + batch] = 10.0 * np.log10(np.abs(f) ** 2 / side**2 + 1e-12)
    return out


def _ring_index(side: int) -> np.ndarray:
    c = side // 2
    yy, xx = np.mgrid[:side, :side]
    return np.rint(np.hypot(yy - c, xx - c)).astype(int)


def _radial(spec: np.ndarray) -> np.ndarray:
    """Ring means 1..side/2 of per-picture 2-D spectra (N, side, side): (N, side/2)."""
    side = spec.shape[1]
    rings = _ring_index(side).ravel()
    keep = (rings >= 1) & (rings <= side // 2)
    counts = np.bincount(rings[keep], minlength=side // 2 + 1)[1:]
    flat = spec.reshape(len(spec), -1)[:, keep]
    sums = np.stack([np.bincount(rings[keep], weights=row, minlength=side // 2 + 1)[1:] for row in flat])
    return (sums / counts).astype(np.float64)


def _grid_peak(mean: np.ndarray) -> float:
    """The largest excess (dB) of a mean 2-D spectrum at 2/4/8/16 px periods on the axes over its ring's median."""
    side = mean.shape[0]
    c = side // 2
    rings = _ring_index(side)
    peaks = []
    for period in GRID_PERIODS_PX:
        f = side // period
        if period >= side or f < 2 or f > c:
            continue
        ring = mean[rings == f]
        # The two axis points at frequency f (c - f is the same frequency mirrored, and always inside).
        points = [mean[c, c - f], mean[c - f, c]]
        peaks.append(float(np.mean(points) - np.median(ring)))
    return max(peaks) if peaks else 0.0


def radial_spectra(images: np.ndarray) -> np.ndarray:
    """Azimuthally averaged power spectra in dB, rings 1..side/2: (N, side/2)."""
    return _radial(power_spectra_2d(images))


def grid_peak_db(images: np.ndarray) -> float:
    """How far the mean spectrum's power at 2/4/8/16 px periods on the axes stands above its ring's median (dB).

    The largest of those excesses; periods the picture is too small for are skipped.
    """
    return _grid_peak(power_spectra_2d(images).mean(axis=0))


@dataclass(frozen=True)
class Spectra:
    """A picture set's spectra from one Fourier pass: per-picture ring curves, their mean, the grid peak."""

    size_px: int
    radial: np.ndarray  # (N, side/2) dB
    mean_db: np.ndarray  # (side/2,) dB
    grid_peak_db: float


def spectra(images: np.ndarray) -> Spectra:
    """The spectra `spectrum_report` and the two-sample test read, from one Fourier pass over `images`."""
    spec = power_spectra_2d(images)
    radial = _radial(spec)
    return Spectra(int(spec.shape[1]), radial, radial.mean(axis=0), _grid_peak(spec.mean(axis=0)))


def spectrum_report(designs: np.ndarray | Spectra, photos: np.ndarray | Spectra) -> dict[str, Any]:
    """Spectrum artefact numbers of designs against photos (see the module docstring)."""
    d = designs if isinstance(designs, Spectra) else spectra(designs)
    ref = photos if isinstance(photos, Spectra) else spectra(photos)
    if d.size_px != ref.size_px:
        raise ValueError(f"designs ({d.size_px} px) and photos ({ref.size_px} px) differ in size")
    gap = d.mean_db - ref.mean_db
    upper = slice(len(gap) // 2, None)
    return {
        "spectrum_distance_db": round(float(np.abs(gap[upper]).mean()), 3),
        "high_frequency_gap_db": round(float(gap[upper].mean()), 3),
        "grid_peak_db": round(d.grid_peak_db - ref.grid_peak_db, 3),
        "grid_peak_designs_db": round(d.grid_peak_db, 3),
        "grid_peak_photos_db": round(ref.grid_peak_db, 3),
        "designs_db": [round(float(v), 2) for v in d.mean_db],
        "photos_db": [round(float(v), 2) for v in ref.mean_db],
    }


def diversity_report(design_feats: np.ndarray, photo_feats: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Mean pairwise feature distance (designs / photos) and the near-duplicate share (see the module docstring)."""
    d = np.asarray(design_feats, dtype=np.float64)
    p = np.asarray(photo_feats, dtype=np.float64)
    if len(d) < 3 or len(p) < 3:
        raise ValueError("diversity needs at least 3 designs and 3 photos")
    rng = np.random.default_rng(seed)
    m = min(len(d), len(p))
    photo_nn = knn_radii(p[rng.choice(len(p), m, replace=False)] if len(p) > m else p, k=1)
    threshold = float(np.percentile(photo_nn, NEAR_DUPLICATE_PERCENTILE))
    shares = []
    for _ in range(DIVERSITY_SUBSETS if len(d) > m else 1):
        sub = d[rng.choice(len(d), m, replace=False)] if len(d) > m else d
        shares.append(float(np.mean(knn_radii(sub, k=1) < threshold)))
    cap = 1000
    dd = d[rng.choice(len(d), cap, replace=False)] if len(d) > cap else d
    pp = p[rng.choice(len(p), cap, replace=False)] if len(p) > cap else p
    iu_d, iu_p = np.triu_indices(len(dd), 1), np.triu_indices(len(pp), 1)
    mean_d = float(pairwise_distances(dd, dd)[iu_d].mean())
    mean_p = float(pairwise_distances(pp, pp)[iu_p].mean())
    return {
        "near_duplicate_share": round(float(np.mean(shares)), 4),
        "near_duplicate_share_spread": round(float(np.std(shares)), 4),
        "near_duplicate_threshold": round(threshold, 4),
        "subset_size": m,
        "mean_pairwise_distance": round(mean_d, 4),
        "photos_mean_pairwise_distance": round(mean_p, 4),
        "pairwise_distance_ratio": round(mean_d / mean_p, 4) if mean_p > 0 else None,
    }


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(axis=0), train.std(axis=0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd


def _pca(train: np.ndarray, test: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Project onto the training folds' top-k principal components, whitened."""
    _, s, vt = np.linalg.svd(train - train.mean(axis=0), full_matrices=False)
    k = min(k, len(s))
    scale = np.where(s[:k] > 1e-9, s[:k] / math.sqrt(max(1, len(train) - 1)), 1.0)
    mu = train.mean(axis=0)
    return ((train - mu) @ vt[:k].T) / scale, ((test - mu) @ vt[:k].T) / scale


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Weights (D + 1; the last is the bias) of a ridge-penalised logistic regression, by L-BFGS."""
    from scipy.optimize import minimize

    xb = np.hstack([x, np.ones((len(x), 1))])

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = xb @ w
        # log(1 + e^z) - y z, written stably; the penalty spares the bias.
        nll = np.logaddexp(0.0, z) - y * z
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        grad = xb.T @ (p - y) / len(y)
        grad[:-1] += ridge * w[:-1] / len(y)
        return float(nll.mean() + 0.5 * ridge * (w[:-1] ** 2).sum() / len(y)), grad

    res = minimize(loss, np.zeros(xb.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return res.x


def _wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    phat = correct / n
    denom = 1 + z**2 / n
    centre = (phat + z**2 / (2 * n)) / denom
    half = z * math.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class TwoSampleResult:
    """Held-out accuracy of the designs-vs-photos classifier."""

    accuracy: float
    ci95: tuple[float, float]
    p_value: float
    n_per_side: int
    n_predictions: int

    def to_json(self, looks_at: str) -> dict[str, Any]:
        return {"accuracy": round(self.accuracy, 4), "ci95": [round(v, 4) for v in self.ci95],
                "p_value": self.p_value, "n_per_side": self.n_per_side, "n_predictions": self.n_predictions,
                "looks_at": looks_at, "classifier": f"logistic regression, ridge {TWO_SAMPLE_RIDGE}, "
                f"{TWO_SAMPLE_COMPONENTS} principal components, {TWO_SAMPLE_FOLDS}-fold CV x {TWO_SAMPLE_REPEATS}",
                "chance": 0.5}


def two_sample_test(design_x: np.ndarray, photo_x: np.ndarray, seed: int = 0) -> TwoSampleResult:
    """Cross-validated accuracy of telling designs (rows of design_x) from photos (rows of photo_x).

    Balanced: each repeat draws as many designs as there are photos (or the reverse). Standardisation and PCA
    are fitted on the training folds only, so nothing about a test picture leaks into its own prediction.
    """
    from scipy.stats import binomtest

    d = np.asarray(design_x, dtype=np.float64)
    p = np.asarray(photo_x, dtype=np.float64)
    if d.ndim != 2 or p.ndim != 2 or d.shape[1] != p.shape[1]:
        raise ValueError(f"two_sample_test needs two (N, D) arrays of one width, got {d.shape} and {p.shape}")
    m = min(len(d), len(p))
    if m < TWO_SAMPLE_FOLDS:
        raise ValueError(f"two_sample_test needs at least {TWO_SAMPLE_FOLDS} pictures per side, got {m}")
    rng = np.random.default_rng([seed, 20170411])
    correct = total = 0
    for _ in range(TWO_SAMPLE_REPEATS):
        xs = np.vstack([d[rng.choice(len(d), m, replace=False)], p[rng.choice(len(p), m, replace=False)]])
        ys = np.concatenate([np.ones(m), np.zeros(m)])
        # Stratified folds: each fold holds the same number of designs and photos.
        folds = np.concatenate([rng.permutation(m) % TWO_SAMPLE_FOLDS, rng.permutation(m) % TWO_SAMPLE_FOLDS])
        for k in range(TWO_SAMPLE_FOLDS):
            tr, te = folds != k, folds == k
            a, b = _standardise(xs[tr], xs[te])
            a, b = _pca(a, b, TWO_SAMPLE_COMPONENTS)
            w = fit_logistic(a, ys[tr], TWO_SAMPLE_RIDGE)
            pred = (np.hstack([b, np.ones((len(b), 1))]) @ w) > 0
            correct += int((pred == (ys[te] > 0.5)).sum())
            total += int(te.sum())
    accuracy = correct / total
    # The CI and p-value count one repeat's 2m predictions (repeats re-use the photos, so they are not independent).
    n_eff = 2 * m
    k_eff = round(accuracy * n_eff)
    p_value = float(binomtest(k_eff, n_eff, 0.5, alternative="greater").pvalue)
    return TwoSampleResult(accuracy, _wilson(k_eff, n_eff), p_value, m, n_eff)


def two_sample_inputs(feats_128: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """What the two-sample classifier looks at: the 128 px network's features beside the spectrum curve."""
    return np.hstack([np.asarray(feats_128, dtype=np.float64), np.asarray(spectra, dtype=np.float64)])


TWO_SAMPLE_LOOKS_AT = "128 px garment-network features + azimuthal power spectrum (dB)"


def blocky(images: np.ndarray, low_px: int = 16) -> np.ndarray:
    """The pictures shrunk to low_px (area average) and blown back up with nearest neighbour: blocky copies."""
    from PIL import Image

    x = _check_images(images, "images")
    side = x.shape[1]
    out = np.empty_like(x)
    for i, img in enumerate(x):
        small = Image.fromarray(img).resize((low_px, low_px), Image.Resampling.BOX)
        out[i] = np.asarray(small.resize((side, side), Image.Resampling.NEAREST))
    return out


def with_grid(images: np.ndarray, period_px: int = 8, strength: float = 12.0) -> np.ndarray:
    """The pictures with a faint dark grid: every period_px-th row and column lowered by `strength` levels."""
    x = _check_images(images, "images").astype(np.float32)
    mask = np.zeros(x.shape[1:3], dtype=np.float32)
    mask[::period_px, :] = 1.0
    mask[:, ::period_px] = 1.0
    return np.clip(x - strength * mask[None, :, :, None], 0, 255).astype(np.uint8)
