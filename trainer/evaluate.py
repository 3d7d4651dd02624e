"""`evaluate(model, data)`: how close a run's or a bundle's designs are to real photos, and whether they copy.

One path for everything that is compared: designs are drawn at the model's size, real photos are decoded and
resized to that size by the trainer's own loader (`trainer.dataset.load_training_data`, the path training used),
and both go through the feature network's internal resize (`trainer.features`). Metrics (`trainer.metrics`):

- rows "designs" (n designs vs the training photos) and "held-out photos" (the real-vs-real floor: photos the
  model never saw vs the training photos), plus a row matched to the other's sample size (FCD is biased at small
  n), each with FCD, KID, precision and recall and their spreads;
- class accuracy for conditional models: the share of designs the classifier assigns to the requested class
  (held-out photos' accuracy beside it);
- novelty: each design's nearest training photo and distance, Meehan et al.'s data-copying test against held-out
  photos, and `closest-pairs.png`, a contact sheet of the closest design/photo pairs.

Held-out photos: `DATA/validation/` when DATA has train/ and validation/ (clothing-small); otherwise a fixed
split of each class folder (20 % per class, seeded by the class name) — then, if the model was trained on the
same folder, those photos were seen in training and the copying test cannot tell copying from fitting (warned).
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import UserError
from trainer import metrics

log = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.2  # share of each class held out when DATA has no validation/ folder
HOLDOUT_SEED = 1234  # seeds that split (with the class name, so a class's split never depends on the others)
MATCHED_SUBSETS = 5  # random subsets averaged for the sample-size-matched rows
MIN_PHOTOS = metrics.K_NEAREST + 1  # the fewest photos (or designs) a set may have
EVALUATION_FILE = "evaluation.json"
CONTACT_SHEET_FILE = "closest-pairs.png"


@dataclass
class EvalOptions:
    """What `evaluate` draws and measures."""

    n: int = 1000  # designs generated
    seed: int = 0  # latent seed: the same draw as `atelier generate --seed`
    classes: list[str] | None = None  # classes to compare against (None: the model's classes)
    features_dir: str | Path | None = None  # feature network folder (None: the shipped one)
    batch: int | None = None  # bundle batch size to run (None: the largest that is not more than n)
    contact_pairs: int = 16  # design/photo pairs on the contact sheet
    novelty: bool = True  # run the data-copying test and draw the contact sheet


# ---------------------------------------------------------------------------------------------------------------
# Models: a run folder (Keras generator) or a bundle (TFLite), behind one interface.


@dataclass
class ModelSource:
    """A generator to evaluate; `generate(z, class_ids)` returns uint8 (n, size, size, 3) designs."""

    kind: str  # "run" or "bundle"
    path: Path
    description: dict[str, Any]  # recorded in evaluation.json
    size_px: int
    z_dim: int
    z_distribution: str
    model_classes: list[str] | None  # the classes a conditional model takes; None when unconditional
    trained_classes: list[str] | None  # the classes it was trained on (from its config)
    crop: str  # how its training photos were squared
    train_data_dir: str | None  # the folder it was trained on, when recorded
    generate: Callable[[np.ndarray, np.ndarray | None], np.ndarray]


def sample_latents(n: int, z_dim: int, distribution: str, seed: int) -> np.ndarray:
    """Latents (n, z_dim) float32: the same draw as `edge.designs.DesignGenerator.sample_latents`.

    Keeping one draw means a run and its bundle evaluated with one seed make the same designs, so their
    difference is the export's quality loss alone.
    """
    rng = np.random.default_rng(seed)
    if distribution == "uniform":
        return rng.uniform(-1.0, 1.0, size=(n, z_dim)).astype(np.float32)
    return rng.standard_normal(size=(n, z_dim), dtype=np.float32)


def snapshot_path(epoch: int) -> str:
    """A kept epoch's generator, relative to the run folder."""
    return f"snapshots/epoch-{epoch:04d}/generator.keras"


def kept_epochs(run_dir: str | Path) -> list[int]:
    """Epochs with a snapshot in `run_dir/snapshots/`, ascending."""
    folder = Path(run_dir) / "snapshots"
    epochs = []
    for p in folder.glob("epoch-*/generator.keras") if folder.is_dir() else []:
        try:
            epochs.append(int(p.parent.name.split("-", 1)[1]))
        except ValueError:
            continue
    return sorted(epochs)


def _keras_generate(generator) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    from tqdm import tqdm

    from trainer.run_folder import to_uint8

    def generate(z: np.ndarray, onehot: np.ndarray | None) -> np.ndarray:
        chunks = []
        for start in tqdm(range(0, len(z), 256), desc="designs", unit="batch", leave=False,
                          disable=len(z) <= 256):
            feeds = [z[start:start + 256]] if onehot is None else [z[start:start + 256], onehot[start:start + 256]]
            chunks.append(to_uint8(generator(feeds, training=False)))
        return np.concatenate(chunks)

    return generate


def open_run(run_dir: Path, snapshot: int | None = None) -> ModelSource:
    """A run folder's generator (generator.keras, or the snapshot of a kept epoch)."""
    from trainer import run_folder

    config = run_folder.read_config(run_dir)
    rel = None
    if snapshot is not None:
        rel = snapshot_path(snapshot)
        if not (run_dir / rel).is_file():
            kept = kept_epochs(run_dir)
            raise UserError(f"{run_dir} has no snapshot of epoch {snapshot}; kept epochs: "
                            f"{', '.join(map(str, kept)) or 'none'} (train with --keep-epochs to keep more)")
    generator = run_folder.load_generator(run_dir, rel)
    summary = run_folder.read_summary(run_dir) if (run_dir / run_folder.SUMMARY).is_file() else {}
    conditional = bool(config.get("conditional"))
    classes = list(config.get("class_names") or []) or None
    try:
        size_px, z_dim, z_dist = int(config["size_px"]), int(config["z_dim"]), str(config["z_distribution"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{run_dir}/config.json lacks size_px, z_dim or z_distribution ({exc})") from exc
    return ModelSource(
        kind="run", path=run_dir,
        description={"kind": "run", "path": str(run_dir), "generator": rel or run_folder.GENERATOR,
                     "epoch": snapshot if snapshot is not None else summary.get("epochs_done"),
                     "preset": config.get("preset"), "conditional": conditional},
        size_px=size_px, z_dim=z_dim, z_distribution=z_dist,
        model_classes=classes if conditional else None, trained_classes=classes,
        crop=str(config.get("crop", "center")), train_data_dir=config.get("data_dir") or None,
        generate=_keras_generate(generator),
    )


def open_bundle(bundle_dir: Path, n: int, batch: int | None = None) -> ModelSource:
    """A bundle's TFLite generator, run by the kiosk's own `DesignGenerator`."""
    from edge.bundle import load_bundle
    from edge.designs import DesignGenerator

    bundle = load_bundle(bundle_dir)
    if batch is None:
        batch = max((b for b in bundle.batches if b <= n), default=bundle.batches[0])
    gen = DesignGenerator(bundle, batch=batch)
    training = bundle.manifest.get("training") or {}
    config = training.get("config") if isinstance(training, dict) else None
    config = config if isinstance(config, dict) else {}

    def generate(z: np.ndarray, onehot: np.ndarray | None) -> np.ndarray:
        class_ids = None if onehot is None else onehot.argmax(axis=1)
        return gen.generate(z, class_ids)

    trained = list(config.get("class_names") or []) or None
    return ModelSource(
        kind="bundle", path=bundle_dir,
        description={"kind": "bundle", "path": str(bundle_dir), "model_id": bundle.model_id, "name": bundle.name,
                     "quantization": bundle.quantization, "batch": batch, "backend": gen.backend,
                     "preset": bundle.preset, "conditional": bundle.conditional},
        size_px=bundle.size_px, z_dim=bundle.z_dim, z_distribution=bundle.z_distribution,
        model_classes=list(bundle.class_names) if bundle.class_names else None,
        trained_classes=list(bundle.class_names) if bundle.class_names else trained,
        crop=str(config.get("crop", "center")), train_data_dir=config.get("data_dir") or None,
        generate=generate,
    )


def open_model(path: str | Path, *, n: int = 1, snapshot: int | None = None, batch: int | None = None) -> ModelSource:
    """A run folder (it has config.json) or a bundle (it has manifest.json)."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder: give a run folder (made by `atelier train`) or a bundle "
                        "(made by `atelier export`)")
    if (path / "manifest.json").is_file():
        if snapshot is not None:
            raise UserError("--snapshot picks a kept epoch of a run folder; a bundle has one generator")
        return open_bundle(path, n, batch)
    if (path / "config.json").is_file():
        return open_run(path, snapshot)
    raise UserError(f"{path} has neither config.json (a run folder) nor manifest.json (a bundle)")


# ---------------------------------------------------------------------------------------------------------------
# Real photos: the training split and a held-out split, through the trainer's loader.


@dataclass
class RealPhotos:
    """Real photos at the model's size, split into the training photos and held-out photos."""

    class_names: list[str]
    train: np.ndarray  # (N, size, size, 3) uint8
    train_labels: np.ndarray  # (N,) index into class_names
    train_files: list[str]
    heldout: np.ndarray  # (M, size, size, 3) uint8
    heldout_labels: np.ndarray
    split: str  # how the held-out photos were chosen
    train_dir: str
    heldout_from_validation: bool  # True when held-out photos come from a validation/ folder


def split_dirs(data_dir: Path) -> tuple[Path, Path | None]:
    """(training folder, validation folder or None) for DATA, DATA/train + DATA/validation, or DATA = .../train."""
    if (data_dir / "train").is_dir() and (data_dir / "validation").is_dir():
        return data_dir / "train", data_dir / "validation"
    if data_dir.name == "train" and (data_dir.parent / "validation").is_dir():
        return data_dir, data_dir.parent / "validation"
    return data_dir, None


def _loaded_files(folder: Path, classes: list[str], report) -> list[str]:
    """The files `load_training_data` used, in its order (its scan order minus what it skipped)."""
    from trainer.dataset import discover

    _, found = discover(folder, classes)
    skipped = {item["path"] for item in report.skipped}
    return [str(p) for name in found for p in found[name] if str(p) not in skipped]


def holdout_mask(labels: np.ndarray, class_names: list[str], fraction: float = HOLDOUT_FRACTION) -> np.ndarray:
    """True for the photos held out: a fixed `fraction` of each class, seeded by the class name."""
    mask = np.zeros(len(labels), dtype=bool)
    for i, name in enumerate(class_names):
        idx = np.flatnonzero(labels == i)
        if len(idx) < 2:
            continue
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        rng = np.random.default_rng([HOLDOUT_SEED, zlib.crc32(name.encode())])
        mask[rng.permutation(idx)[:k]] = True
    return mask


def load_real(data_dir: str | Path, size_px: int, classes: list[str] | None, crop: str = "center") -> RealPhotos:
    """Training and held-out photos of `classes` from DATA, decoded and resized as training does.

    Raises:
        UserError: the folder or a class is missing, or there are too few photos to measure anything.
    """
    from trainer.dataset import load_training_data

    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data {data_dir} is not a folder of photos")
    train_dir, val_dir = split_dirs(data_dir)
    log.info("reading real photos from %s", data_dir)
    train = load_training_data(train_dir, size_px, classes=classes, crop=crop)
    files = _loaded_files(train_dir, train.class_names, train.report)
    if val_dir is not None:
        val = load_training_data(val_dir, size_px, classes=train.class_names, crop=crop)
        real = RealPhotos(train.class_names, train.images, train.labels, files, val.images, val.labels,
                          f"{val_dir} (the dataset's validation split)", str(train_dir), True)
    else:
        mask = holdout_mask(train.labels, train.class_names)
        real = RealPhotos(train.class_names, train.images[~mask], train.labels[~mask],
                          [f for f, m in zip(files, mask, strict=True) if not m], train.images[mask],
                          train.labels[mask],
                          f"fixed split of {train_dir}: {HOLDOUT_FRACTION:.0%} of each class held out "
                          f"(seed {HOLDOUT_SEED} and the class name)", str(train_dir), False)
    for name, images in (("training", real.train), ("held-out", real.heldout)):
        if len(images) < MIN_PHOTOS:
            raise UserError(f"only {len(images)} {name} photos of {', '.join(real.class_names)} in {data_dir}; "
                            f"need at least {MIN_PHOTOS} (add photos or choose other --classes)")
    return real


# ---------------------------------------------------------------------------------------------------------------
# Measuring designs against the real photos.


def _row(reference: np.ndarray, candidate: np.ndarray, seed: int) -> dict[str, Any]:
    precision, recall = metrics.precision_recall_spread(reference, candidate, seed=seed)
    return {
        "n": len(candidate),
        "fcd": metrics.fcd(reference, candidate, seed=seed).to_json(),
        "kid": metrics.kid(reference, candidate, seed=seed).to_json(),
        "precision": precision.to_json(),
        "recall": recall.to_json(),
    }


def _matched_row(reference: np.ndarray, candidate: np.ndarray, size: int, seed: int) -> dict[str, Any]:
    """Metrics of random `size`-subsets of candidate, averaged (spread: std over the subsets)."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {"fcd": [], "kid": [], "precision": [], "recall": []}
    for _ in range(MATCHED_SUBSETS):
        sub = candidate[rng.choice(len(candidate), size, replace=False)]
        values["fcd"].append(metrics.frechet_distance(reference, sub))
        values["kid"].append(metrics.kid(reference, sub, n_subsets=10, seed=seed).value)
        p, r = metrics.precision_recall(reference, sub)
        values["precision"].append(p)
        values["recall"].append(r)
    kind = f"std over {MATCHED_SUBSETS} subsets of {size}"
    return {"n": size, **{k: metrics.Estimate(float(np.mean(v)), float(np.std(v)), kind).to_json()
                          for k, v in values.items()}}


@dataclass
class Evaluator:
    """Real photos' features computed once; `measure(designs)` compares any number of design sets with them.

    Args:
        features: the loaded feature network.
        real: training and held-out photos.
        seed: seeds every resampling (bootstrap, subsets).
    """

    features: Any  # trainer.features.GarmentFeatures
    real: RealPhotos
    seed: int = 0
    train_feats: np.ndarray = field(init=False)
    heldout_feats: np.ndarray = field(init=False)
    heldout_probs: np.ndarray = field(init=False)
    _floor: dict[str, Any] | None = field(init=False, default=None)
    _train_vs_heldout: dict[str, Any] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.train_feats, _ = self.features(self.real.train)
        self.heldout_feats, self.heldout_probs = self.features(self.real.heldout)

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
                per_class[name] = metrics.class_share(probs[sel], np.full(len(sel), idx)).to_json()
                rows.extend(sel)
                targets.extend([idx] * len(sel))
        out: dict[str, Any] = {"unknown_classes": unknown, "per_class": per_class, "designs": None,
                               "heldout": None,
                               "aliases": {c: self.features.class_names[known[c]] for c in known
                                           if known[c] is not None and c not in self.features.class_names}}
        if rows:
            out["designs"] = metrics.class_share(probs[rows], np.asarray(targets)).to_json()
        held_idx = np.array([known[self.real.class_names[i]] if known[self.real.class_names[i]] is not None else -1
                             for i in self.real.heldout_labels])
        keep = held_idx >= 0
        if keep.any():
            out["heldout"] = metrics.class_share(self.heldout_probs[keep], held_idx[keep]).to_json()
        return out

    def _median(self, values: np.ndarray) -> dict[str, Any]:
        rng = np.random.default_rng(self.seed)
        boots = [np.median(values[rng.integers(0, len(values), len(values))]) for _ in range(metrics.N_BOOTSTRAP)]
        return metrics.Estimate(float(np.median(values)), float(np.std(boots)),
                                f"bootstrap std ({metrics.N_BOOTSTRAP})").to_json()

    def _novelty(self, feats: np.ndarray, contact_pairs: int) -> dict[str, Any]:
        check = metrics.data_copying(feats, self.heldout_feats, self.train_feats, seed=self.seed)
        order = np.argsort(check.design_dist, kind="stable")[:contact_pairs]
        flagged = set(check.flagged.tolist())
        return {
            "share_closer": check.share_closer.to_json(),
            "z_u": check.z_u,
            "p_value": check.p_value,
            "percentile": metrics.COPY_PERCENTILE,
            "threshold": check.threshold,
            "flagged": [int(i) for i in check.flagged],
            "flagged_share": metrics.Estimate(
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


# ---------------------------------------------------------------------------------------------------------------
# The contact sheet.


def contact_sheet(designs: np.ndarray, train: np.ndarray, closest: list[dict[str, Any]], cols: int = 4) -> np.ndarray:
    """Design | nearest training photo pairs, closest first, captioned with the distance (red when flagged)."""
    from PIL import Image, ImageDraw, ImageFont

    size = designs.shape[1]
    scale = max(1, math.ceil(96 / size))  # at least 96 px per picture, integer nearest-neighbour zoom
    cell = size * scale
    gap, caption, title = 4, 16, 22
    pair_w = 2 * cell + gap
    rows = max(1, math.ceil(len(closest) / cols))
    width = cols * pair_w + (cols + 1) * 3 * gap
    height = title + rows * (cell + caption + 2 * gap) + gap
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    draw.text((3 * gap, 4), "design | nearest training photo (closest first; red: closer than 95% of held-out "
                            "photos)", fill=(0, 0, 0), font=font)
    for k, item in enumerate(closest):
        r, c = divmod(k, cols)
        x = 3 * gap + c * (pair_w + 3 * gap)
        y = title + r * (cell + caption + 2 * gap)
        for j, img in enumerate((designs[item["design"]], train[item["train_index"]])):
            tile = Image.fromarray(img).resize((cell, cell), Image.Resampling.NEAREST)
            sheet.paste(tile, (x + j * (cell + gap), y))
        colour = (200, 0, 0) if item["flagged"] else (60, 60, 60)
        if item["flagged"]:
            draw.rectangle((x - 2, y - 2, x + pair_w + 1, y + cell + 1), outline=colour, width=2)
        draw.text((x, y + cell + 2), f"#{item['design']}  d = {item['distance']:.2f}", fill=colour, font=font)
    return np.asarray(sheet)


# ---------------------------------------------------------------------------------------------------------------
# The command.


def requested_classes(model: ModelSource, classes: list[str] | None) -> list[str]:
    """The classes to compare against: `classes`, else a conditional model's classes, else those it trained on."""
    if classes:
        if model.model_classes is not None:
            unknown = [c for c in classes if c not in model.model_classes]
            if unknown:
                raise UserError(f"--classes {', '.join(unknown)}: the model draws only "
                                f"{', '.join(model.model_classes)}")
        return list(classes)
    if model.model_classes:
        return list(model.model_classes)
    if model.trained_classes:
        return list(model.trained_classes)
    raise UserError(f"{model.path} does not record the classes it was trained on: pass --classes")


def default_out_dir(model: ModelSource, snapshot: int | None) -> Path:
    """RUN_DIR/evaluation (RUN_DIR/evaluation-epoch-NNNN for a snapshot), or BUNDLE-evaluation beside a bundle."""
    if model.kind == "bundle":
        return model.path.parent / f"{model.path.name}-evaluation"
    return model.path / ("evaluation" if snapshot is None else f"evaluation-epoch-{snapshot:04d}")


def make_designs(model: ModelSource, n: int, seed: int, classes: list[str]) -> tuple[np.ndarray, list[str] | None]:
    """n designs from fixed latents; a conditional model goes round `classes`. Returns (designs, requested)."""
    z = sample_latents(n, model.z_dim, model.z_distribution, seed)
    if model.model_classes is None:
        return model.generate(z, None), None
    requested = [classes[i % len(classes)] for i in range(n)]
    ids = np.array([model.model_classes.index(c) for c in requested])
    onehot = np.eye(len(model.model_classes), dtype=np.float32)[ids]
    return model.generate(z, onehot), requested


def _seen_in_training(model: ModelSource, real: RealPhotos) -> bool | None:
    if real.heldout_from_validation:
        return False
    if not model.train_data_dir:
        return None
    trained_on = Path(model.train_data_dir).resolve()
    return trained_on == Path(real.train_dir).resolve()


def evaluate(model_path: str | Path, data_dir: str | Path, options: EvalOptions | None = None, *,
             out_dir: str | Path | None = None, snapshot: int | str | None = None) -> dict[str, Any]:
    """Evaluate a run folder or a bundle against the real photos in `data_dir`; write evaluation.json.

    Args:
        model_path: a run folder (config.json) or a bundle folder (manifest.json).
        data_dir: a dataset root with train/ and validation/, or class folders (see the module docstring).
        options: sample size, seed, classes, feature network.
        out_dir: where evaluation.json and closest-pairs.png go (default: see `default_out_dir`).
        snapshot: evaluate the kept epoch's generator of a run instead of generator.keras.

    Returns:
        The evaluation (also written as evaluation.json), with "files" naming what was written.
    """
    from trainer import run_folder
    from trainer.features import feature_dir, load_feature_net

    options = options or EvalOptions()
    if options.n < MIN_PHOTOS:
        raise UserError(f"--n must be at least {MIN_PHOTOS} (precision/recall use {metrics.K_NEAREST} neighbours), "
                        f"got {options.n}")
    if options.seed < 0:
        raise UserError(f"--seed must be a non-negative integer, got {options.seed}")
    if snapshot is not None:
        try:
            snapshot = int(snapshot)
        except ValueError as exc:
            raise UserError(f"--snapshot takes an epoch number, got {snapshot!r}") from exc
    t0 = time.perf_counter()
    features = load_feature_net(options.features_dir)
    model = open_model(model_path, n=options.n, snapshot=snapshot, batch=options.batch)
    classes = requested_classes(model, options.classes)
    out = Path(out_dir) if out_dir is not None else default_out_dir(model, snapshot)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; give a folder for evaluation.json and {CONTACT_SHEET_FILE}")
    real = load_real(data_dir, model.size_px, classes, model.crop)
    seen = _seen_in_training(model, real)
    if seen:
        log.warning("the held-out photos are a split of %s, the folder the model was trained on: it has seen "
                    "them, so the data-copying test cannot separate copying from fitting (use a dataset with a "
                    "validation/ folder)", real.train_dir)
    log.info("generating %d designs (seed %d) from %s", options.n, options.seed, model.path)
    designs, requested = make_designs(model, options.n, options.seed, classes)
    log.info("measuring against %d training and %d held-out photos", len(real.train), len(real.heldout))
    evaluator = Evaluator(features, real, seed=options.seed)
    measured = evaluator.measure(designs, requested, novelty=options.novelty, contact_pairs=options.contact_pairs)
    result: dict[str, Any] = {
        "model": model.description,
        "data": {"dir": str(data_dir), "train_dir": real.train_dir, "classes": real.class_names,
                 "n_train": len(real.train), "n_heldout": len(real.heldout), "heldout": real.split,
                 "heldout_seen_in_training": seen, "size_px": model.size_px, "crop": model.crop},
        "features": {"dir": str(options.features_dir or feature_dir()), "sha256": features.card.get("sha256"),
                     "val_accuracy": features.card.get("val_accuracy"), "feature_dim": features.feature_dim},
        "latents": {"n": options.n, "seed": options.seed, "distribution": model.z_distribution,
                    "classes": classes if requested is not None else None},
        **measured,
    }
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": str(out / EVALUATION_FILE)}
    if measured["novelty"] is not None:
        sheet = contact_sheet(designs, real.train, measured["novelty"]["closest"])
        run_folder.write_png(out / CONTACT_SHEET_FILE, sheet)
        files["contact_sheet"] = str(out / CONTACT_SHEET_FILE)
    result["files"] = files
    result["wall_s"] = round(time.perf_counter() - t0, 2)
    run_folder.write_json_atomic(out / EVALUATION_FILE, result)
    return result


def _cell(est: dict[str, Any] | None, digits: int = 3, scale: float = 1.0) -> str:
    if est is None:
        return "—"
    return metrics.Estimate(est["value"], est["spread"], est["spread_kind"]).format(digits, scale)


def format_table(result: dict[str, Any]) -> str:
    """The evaluation as a readable text table (what `atelier evaluate` prints)."""
    model, data = result["model"], result["data"]
    lines = [
        f"{model['kind']} {model['path']}" + (f" (epoch {model['epoch']})" if model.get("epoch") else "")
        + f" — {data['size_px']} px, {result['latents']['n']} designs, seed {result['latents']['seed']}",
        f"real photos: {data['n_train']} training, {data['n_heldout']} held-out ({data['heldout']}); "
        f"classes {', '.join(data['classes'])}",
        f"feature network: {result['features']['feature_dim']}-d, validation accuracy "
        f"{result['features']['val_accuracy']}",
        "",
        f"{'vs the training photos':<30} {'n':>5}  {'FCD':>17}  {'KID x 1000':>15}  {'precision':>13}  "
        f"{'recall':>13}",
    ]
    names = {"designs": "designs", "designs_matched": "designs (n matched)",
             "heldout": "held-out photos (floor)", "heldout_matched": "held-out photos (n matched)"}
    def table_line(name: str, row: dict[str, Any]) -> str:
        return (f"{name:<30} {row['n']:>5}  {_cell(row['fcd'], 2):>17}  {_cell(row['kid'], 2, 1000):>15}  "
                f"{_cell(row['precision']):>13}  {_cell(row['recall']):>13}")

    for key in ("designs", "designs_matched", "heldout", "heldout_matched"):
        row = result["rows"].get(key)
        if row is not None:
            lines.append(table_line(names[key], row))
    held = [("designs_vs_heldout", "designs"), ("train_vs_heldout", "training photos (floor)")]
    if all(k in result["rows"] for k, _ in held):
        lines.append(f"{'vs the held-out photos':<30}")
        lines.extend(table_line(name, result["rows"][key]) for key, name in held)
    lines.append("(± : FCD bootstrap std; KID std over subsets; precision/recall std over half-size subsets)")
    acc = result.get("class_accuracy")
    if acc is not None:
        per = ", ".join(f"{k} {v['value']:.2f}" for k, v in acc["per_class"].items())
        lines.append("")
        lines.append(f"class accuracy (designs the classifier puts in the requested class): {_cell(acc['designs'])}"
                     f" ({per or 'no class the classifier knows'}); held-out photos {_cell(acc['heldout'])}")
        if acc["unknown_classes"]:
            lines.append(f"  not measured (the classifier lacks them): {', '.join(acc['unknown_classes'])}")
    nov = result.get("novelty")
    if nov is not None:
        lines.append("")
        lines.append(f"novelty: median distance to the nearest training photo {_cell(nov['design_dist_median'], 2)} "
                     f"(held-out photos {_cell(nov['heldout_dist_median'], 2)})")
        lines.append(f"  designs closer to a training photo than held-out photos are: "
                     f"{_cell(nov['share_closer'])} (0.5 = like new photos; near 1 = copying); "
                     f"Z_U {nov['z_u']:.2f}, p {nov['p_value']:.3g}")
        lines.append(f"  {len(nov['flagged'])} designs ({_cell(nov['flagged_share'])} of them) closer than "
                     f"{100 - nov['percentile']:.0f}% of held-out photos (about {nov['percentile']:.0f}% expected "
                     "without copying)")
        if data.get("heldout_seen_in_training"):
            lines.append("  warning: the held-out photos were in the model's training folder; use a dataset with "
                         "validation/ for a real copying test")
    lines.append("")
    lines.append("wrote " + ", ".join(result["files"].values()))
    return "\n".join(lines)
