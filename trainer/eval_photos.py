"""Real photos for evaluation: the training split and a held-out split, read through the trainer's own loader.

Held-out photos: `DATA/validation/` when DATA has train/ and validation/ (clothing-small); otherwise a fixed
split of each class folder (20 % per class, seeded by the class name) — then, if the model was trained on the
same folder, those photos were seen in training and the copying test cannot tell copying from fitting.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import UserError
from trainer import feature_distances as fd

log = logging.getLogger(__name__)

HOLDOUT_FRACTION = 0.2  # share of each class held out when DATA has no validation/ folder
HOLDOUT_SEED = 1234  # seeds that split (with the class name, so a class's split never depends on the others)
MIN_PHOTOS = fd.K_NEAREST + 1  # the fewest photos (or designs) a set may have


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


