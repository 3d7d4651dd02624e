"""`Evaluator`: the real photos' features computed once; `measure(designs)` compares any design set with them.

Rows (each with FCD, KID, precision and recall and their spreads, `trainer.feature_distances`), in the 64 px feature
space (`rows`) and in the 128 px one (`rows_128`, when that network is installed): "designs" (n designs vs the
training photos) and "heldout" (the real-vs-real floor), plus a row matched to the other's sample size (FCD is
biased at small n), and the same against the held-out photos. Beside them: class accuracy for conditional models,
novelty (Meehan et al.'s data-copying test) and the realism instruments of `trainer.realism` (two-sample classifier
test, spectrum artefacts, diversity).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer import feature_distances as fd
from trainer import realism
from trainer.eval_photos import RealPhotos

MATCHED_SUBSETS = 5  # random subsets averaged for the sample-size-matched rows


def _row(reference: np.ndarray, candidate: np.ndarray, seed: int) -> dict[str, Any]:
    precision, recall = fd.precision_recall_spread(reference, candidate, seed=seed)
    return {
        "n": len(candidate),
        "fcd": fd.fcd(reference, candidate, seed=seed).to_json(),
        "kid": fd.kid(reference, candidate, seed=seed).to_json(),
        "precision": precision.to_json(),
        "recall": recall.to_json(),
    }


def _matched_row(reference: np.ndarray, candidate: np.ndarray, size: int, seed: int) -> dict[str, Any]:
    """Metrics of random `size`-subsets of candidate, averaged (spread: std over the subsets)."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {"fcd": [], "kid": [], "precision": [], "recall": []}
    for _ in range(MATCHED_SUBSETS):
        sub = candidate[rng.choice(len(candidate), size, replace=False)]
        values["fcd"].append(fd.frechet_distance(reference, sub))
        values["kid"].append(fd.kid(reference, sub, n_subsets=10, seed=seed).value)
        p, r = fd.precision_recall(reference, sub)
        values["precision"].append(p)
        values["recall"].append(r)
    kind = f"std over {MATCHED_SUBSETS} subsets of {size}"
    return {"n": size, **{k: fd.Estimate(float(np.mean(v)), float(np.std(v)), kind).to_json()
                          for k, v in values.items()}}


@dataclass
class Evaluator:
    """Real photos' features computed once; `measure(designs)` compares any number of design sets with them.

    Args:
        features: the loaded feature network.
        real: training and held-out photos.
        seed: seeds every resampling (bootstrap, subsets).
    """

    features: Any  # trainer.features.GarmentFeatures (64 px)
    real: RealPhotos
    seed: int = 0
    features_128: Any = None  # the 128 px network; None: no rows_128, the two-sample test looks at 64 px features
    train_feats: np.ndarray = field(init=False)
    heldout_feats: np.ndarray = field(init=False)
    heldout_probs: np.ndarray = field(init=False)
    _floor: dict[str, Any] | None = field(init=False, default=None)
    _train_vs_heldout: dict[str, Any] | None = field(init=False, default=None)
    _floor_128: dict[str, Any] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.train_feats, _ = self.features(self.real.train)
        self.heldout_feats, self.heldout_probs = self.features(self.real.heldout)
        self.train_128 = self.heldout_128 = None
        if self.features_128 is not None:
            self.train_128, _ = self.features_128(self.real.train)
            self.heldout_128, _ = self.features_128(self.real.heldout)
        self.photo_spectra = realism.spectra(self.real.train)
        self.heldout_radial = realism.spectra(self.real.heldout).radial

    def _realism(self, designs: np.ndarray, feats: np.ndarray) -> dict[str, Any]:
        """Rows in the 128 px space, the two-sample test, spectrum artefacts and diversity."""
        out: dict[str, Any] = {"rows_128": None}
        f128 = feats
        if self.features_128 is not None:
            f128, _ = self.features_128(designs)
            if self._floor_128 is None:
                self._floor_128 = _row(self.train_128, self.heldout_128, self.seed)
            out["rows_128"] = {"designs": _row(self.train_128, f128, self.seed), "heldout": self._floor_128,
                               "designs_vs_heldout": _row(self.heldout_128, f128, self.seed)}
        held_f = self.heldout_128 if self.features_128 is not None else self.heldout_feats
        looks_at = realism.TWO_SAMPLE_LOOKS_AT if self.features_128 is not None else \
            "64 px garment-network features + azimuthal power spectrum (dB)"
        design_spectra = realism.spectra(designs)
        try:
            test = realism.two_sample_test(realism.two_sample_inputs(f128, design_spectra.radial),
                                           realism.two_sample_inputs(held_f, self.heldout_radial), seed=self.seed)
            out["two_sample"] = test.to_json(looks_at)
        except ValueError as exc:  # too few pictures on one side
            out["two_sample"] = {"accuracy": None, "reason": str(exc), "looks_at": looks_at}
        out["spectrum"] = realism.spectrum_report(design_spectra, self.photo_spectra)
        out["diversity"] = realism.diversity_report(f128, held_f, seed=self.seed)
        return out

    def floor(self) -> dict[str, Any]:
        """Held-out photos vs the training photos: what a perfect generator would score."""
        if self._floor is None:
            self._floor = _row(self.train_feats, self.heldout_feats, self.seed)
        return self._floor

    def measure(self, designs: np.ndarray, requested: list[str] | None = None, *, novelty: bool = True,
                contact_pairs: int = 16) -> dict[str, Any]:
        """Compare designs (uint8 (n, H, W, 3)) with the real photos.

        Args:
            designs: the designs.
            requested: for a conditional model, the class name each design was asked for.
            novelty: run the data-copying test.
            contact_pairs: how many closest pairs to list for the contact sheet.
        """
        feats, probs = self.features(designs)
        n, m = len(feats), len(self.heldout_feats)
        rows: dict[str, Any] = {"designs": _row(self.train_feats, feats, self.seed), "heldout": self.floor()}
        if n > m:
            rows["designs_matched"] = _matched_row(self.train_feats, feats, m, self.seed)
        elif m > n:
            rows["heldout_matched"] = _matched_row(self.train_feats, self.heldout_feats, n, self.seed)
        # The same against the held-out photos (the validation split): photos the model never saw. Few photos
        # make FCD biased upwards, so compare it with its own floor, the training photos against them.
        rows["designs_vs_heldout"] = _row(self.heldout_feats, feats, self.seed)
        if self._train_vs_heldout is None:
            self._train_vs_heldout = _row(self.heldout_feats, self.train_feats, self.seed)
        rows["train_vs_heldout"] = self._train_vs_heldout
        result: dict[str, Any] = {"rows": rows, "class_accuracy": None, "novelty": None,
                                  "design_classes": self._histogram(probs)}
        if requested is not None:
            result["class_accuracy"] = self._class_accuracy(probs, requested)
        if novelty:
            result["novelty"] = self._novelty(feats, contact_pairs)
        result.update(self._realism(designs, feats))
        return result

    def _histogram(self, probs: np.ndarray) -> dict[str, float]:
        """Share of designs the classifier puts in each of its classes (the non-zero ones)."""
        counts = np.bincount(probs.argmax(axis=1), minlength=len(self.features.class_names)) / len(probs)
        return {name: round(float(c), 4) for name, c in zip(self.features.class_names, counts, strict=True) if c}

    def _class_accuracy(self, probs: np.ndarray, requested: list[str]) -> dict[str, Any]:
        known = {name: self.features.class_index(name) for name in self.real.class_names}
        unknown = sorted(name for name, idx in known.items() if idx is None)
        per_class, rows, targets = {}, [], []
        for name, idx in known.items():
            if idx is None:
                continue
            sel = np.flatnonzero(np.asarray(requested) == name)
            if len(sel):
                per_class[name] = fd.class_share(probs[sel], np.full(len(sel), idx)).to_json()
                rows.extend(sel)
                targets.extend([idx] * len(sel))
        out: dict[str, Any] = {"unknown_classes": unknown, "per_class": per_class, "designs": None,
                               "heldout": None,
                               "aliases": {c: self.features.class_names[known[c]] for c in known
                                           if known[c] is not None and c not in self.features.class_names}}
        if rows:
            out["designs"] = fd.class_share(probs[rows], np.asarray(targets)).to_json()
        held_idx = np.array([known[self.real.class_names[i]] if known[self.real.class_names[i]] is not None else -1
                             for i in self.real.heldout_labels])
        keep = held_idx >= 0
        if keep.any():
            out["heldout"] = fd.class_share(self.heldout_probs[keep], held_idx[keep]).to_json()
        # Per class: the classifier's accuracy on that class's held-out photos, and the designs' share against it
        # (1.0 = the model's designs of the class are recognised as often as photos of it).
        heldout_per_class, ratio = {}, {}
        own = np.asarray(self.real.heldout_labels)
        for i, (name, idx) in enumerate(known.items()):  # known follows self.real.class_names
            sel = np.flatnonzero((own == i) & keep) if idx is not None else []
            if len(sel):
                heldout_per_class[name] = fd.class_share(self.heldout_probs[sel], held_idx[sel]).to_json()
                if name in per_class and heldout_per_class[name]["value"] > 0:
                    ratio[name] = round(per_class[name]["value"] / heldout_per_class[name]["value"], 4)
        out["heldout_per_class"] = heldout_per_class
        out["share_of_heldout_accuracy"] = ratio
        return out

    def _median(self, values: np.ndarray) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed)
        boots = [np.median(values[rng.integers(0, len(values), len(values))]) for _ in range(fd.N_BOOTSTRAP)]
        return fd.Estimate(float(np.median(values)), float(np.std(boots)),
                                f"bootstrap std ({fd.N_BOOTSTRAP})").to_json()

    def _novelty(self, feats: np.ndarray, contact_pairs: int) -> dict[str, Any]:
        check = fd.data_copying(feats, self.heldout_feats, self.train_feats, seed=self.seed)
        order = np.argsort(check.design_dist, kind="stable")[:contact_pairs]
        flagged = set(check.flagged.tolist())
        return {
            "share_closer": check.share_closer.to_json(),
            "z_u": check.z_u,
            "p_value": check.p_value,
            "percentile": fd.COPY_PERCENTILE,
            "threshold": check.threshold,
            "flagged": [int(i) for i in check.flagged],
            "flagged_share": fd.Estimate(
                check.flagged_share, math.sqrt(check.flagged_share * (1 - check.flagged_share) / len(feats)),
                "binomial standard error").to_json(),
            "design_dist_median": self._median(check.design_dist),
            "heldout_dist_median": self._median(check.heldout_dist),
            "closest": [{"design": int(i), "train_index": int(check.nearest_train[i]),
                         "train_file": self.real.train_files[int(check.nearest_train[i])],
                         "distance": float(check.design_dist[i]), "flagged": int(i) in flagged} for i in order],
            "nearest": [{"train_index": int(j), "distance": round(float(d), 4)}
                        for j, d in zip(check.nearest_train, check.design_dist, strict=True)],
        }


