"""Prove the realism instrument: five image sets a person ranks without hesitation, scored by `Evaluator`.

(a) real photos, (b) the same photos made blocky (down to 16 px and back with nearest neighbour), (c) the same
photos with a faint 8 px grid, (d) a model's designs (the t-shirt default of 2026-11-25, whose blocky, gridded designs
the issue was filed about; 200 of them ship in models/reference, so the proof does not move when the default gets
better), (e) the seed preset after 30 minutes (flat grey; its designs ship in models/reference). A person ranks them
a < c < b < d < e (best first).

So that no set is compared with itself, the photos of (a)-(c) are a fixed random share of the training photos that
the reference leaves out: the evaluation's training photos are the rest, its held-out photos the validation split.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import UserError
from trainer import realism

log = logging.getLogger(__name__)

SET_NAMES = ("photos", "blocky", "grid", "default", "seed-30min")
PERSON_ORDER = ("photos", "grid", "blocky", "default", "seed-30min")  # best first, as a person ranks them
PROOF_PHOTOS = 150  # training photos taken out of the reference to be set (a)
PROOF_SEED = 2020


@dataclass
class InstrumentCheck:
    """The five sets' evaluations (Evaluator.measure results), keyed by SET_NAMES."""

    results: dict[str, dict[str, Any]]
    n_reference: int
    n_heldout: int

    def headline(self, name: str) -> dict[str, float | None]:
        """The numbers the README table shows for one set."""
        r = self.results[name]
        rows_128 = (r.get("rows_128") or {}).get("designs") or {}
        two = r.get("two_sample") or {}
        return {
            "fcd_64": r["rows"]["designs"]["fcd"]["value"],
            "kid_64": r["rows"]["designs"]["kid"]["value"],
            "fcd_128": rows_128.get("fcd", {}).get("value"),
            "kid_128": rows_128.get("kid", {}).get("value"),
            "two_sample": two.get("accuracy"),
            "spectrum_db": r["spectrum"]["spectrum_distance_db"],
            "grid_peak_db": r["spectrum"]["grid_peak_db"],
            "near_duplicates": r["diversity"]["near_duplicate_share"],
        }

    def spread(self, name: str, key: str) -> float:
        """The standard deviation of one headline number (bootstrap, subsets, or the two-sample CI / 3.92)."""
        r = self.results[name]
        if key == "two_sample":
            lo, hi = r["two_sample"]["ci95"]
            return (hi - lo) / 3.92
        metric, space = key.split("_")
        row = r["rows"]["designs"] if space == "64" else r["rows_128"]["designs"]
        return float(row[metric]["spread"])

    def separates(self, key: str, better: str, worse: str, sigmas: float = 2.0) -> bool:
        """Whether one number scores `worse` above `better` by more than `sigmas` combined spreads."""
        gap = self.headline(worse)[key] - self.headline(better)[key]
        return gap > sigmas * float(np.hypot(self.spread(better, key), self.spread(worse, key)))

    def ranking(self, key: str) -> list[str]:
        """The sets ordered best first by one headline number (lower is better for all of them)."""
        return sorted(SET_NAMES, key=lambda n: self.headline(n)[key])


def run_check(data_dir: str | Path, default_bundle: str | Path, seed_designs: str | Path, *,
              n_designs: int = 300, features_dir: str | Path | None = None,
              features_128_dir: str | Path | None = None, seed: int = 0) -> InstrumentCheck:
    """Build the five sets and measure them against one reference.

    Args:
        data_dir: clothing-small (train/ and validation/); the t-shirts are used.
        default_bundle: set (d): a model bundle (its t-shirt designs are drawn), or a .npz / folder of designs.
        seed_designs: a .npz of the seed preset's designs after 30 minutes, set (e).
        n_designs: designs drawn for (d).
    """
    from trainer.eval_images import load_design_images
    from trainer.eval_photos import RealPhotos, load_real
    from trainer.eval_sources import make_designs, open_model
    from trainer.evaluator import Evaluator
    from trainer.features import DEFAULT_DIR_128, load_feature_net

    real = load_real(data_dir, 128, ["t-shirt"])
    if not real.heldout_from_validation:
        raise UserError(f"{data_dir} needs a validation/ split (clothing-small) for the instrument check")
    if len(real.train) < 2 * PROOF_PHOTOS:
        raise UserError(f"the instrument check needs at least {2 * PROOF_PHOTOS} training t-shirts")
    rng = np.random.default_rng(PROOF_SEED)
    taken = np.zeros(len(real.train), bool)
    taken[rng.choice(len(real.train), PROOF_PHOTOS, replace=False)] = True
    photos = real.train[taken]
    reference = RealPhotos(real.class_names, real.train[~taken], real.train_labels[~taken],
                           [f for f, t in zip(real.train_files, taken, strict=True) if not t], real.heldout,
                           real.heldout_labels, real.split, real.train_dir, True)
    if (Path(default_bundle) / "manifest.json").is_file():
        model = open_model(default_bundle, n=n_designs)
        default, _ = make_designs(model, n_designs, seed, ["t-shirt"])
    else:
        default, _ = load_design_images(default_bundle, 128)
    seed_set, _ = load_design_images(seed_designs, 128)
    sets = {"photos": photos, "blocky": realism.blocky(photos, 16), "grid": realism.with_grid(photos, 8, 12.0),
            "default": default, "seed-30min": seed_set}
    features_128 = load_feature_net(features_128_dir or DEFAULT_DIR_128)
    evaluator = Evaluator(load_feature_net(features_dir), reference, seed=seed, features_128=features_128)
    results = {}
    for name in SET_NAMES:
        log.info("instrument check: measuring %s (%d pictures)", name, len(sets[name]))
        results[name] = evaluator.measure(sets[name], novelty=False)
    return InstrumentCheck(results, len(reference.train), len(reference.heldout))


def format_check(check: InstrumentCheck) -> str:
    """A Markdown table of the five sets and the rankings each number gives."""
    head = ("| set | FCD (64 px, today) | KID×1000 (64 px) | FCD (128 px) | KID×1000 (128 px) | two-sample acc. | "
            "spectrum dB | grid peak dB | near-dup. |")
    lines = [head, "|" + "---|" * 9]
    for name in SET_NAMES:
        h = check.headline(name)
        def f(v: float | None, digits: int = 2, scale: float = 1.0) -> str:
            return "—" if v is None else f"{v * scale:.{digits}f}"
        lines.append(f"| {name} | {f(h['fcd_64'])} | {f(h['kid_64'], 1, 1000)} | {f(h['fcd_128'])} | "
                     f"{f(h['kid_128'], 1, 1000)} | {f(h['two_sample'], 3)} | {f(h['spectrum_db'])} | "
                     f"{f(h['grid_peak_db'], 1)} | {f(h['near_duplicates'], 3)} |")
    lines.append("")
    lines.append(f"A person's order (best first): {' < '.join(PERSON_ORDER)}")
    lines.append("Order by each number, and the neighbours it tells apart by more than 2 spreads ('<') or not ('~'):")
    for key in SEPARATING_KEYS:
        order = check.ranking(key)
        verdict = "right" if tuple(order) == PERSON_ORDER else "wrong"
        steps = [order[0]]
        for better, worse in itertools.pairwise(order):
            steps.append(("< " if check.separates(key, better, worse) else "~ ") + worse)
        lines.append(f"- {key}: {' '.join(steps)} (order {verdict})")
    return "\n".join(lines)


SEPARATING_KEYS = ("fcd_64", "kid_64", "fcd_128", "kid_128", "two_sample")
