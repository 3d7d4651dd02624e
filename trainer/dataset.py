"""Training data: scan a folder, decode every usable image once, report the rest, feed batches through tf.data.

Layouts: a folder of class subfolders (clothing-small: `train/<class>/*.jpg`), a flat folder of images (one class
named after the folder), or a dataset root holding `train/`. Every image is decoded, squared and resized once
(`trainer.image_files`) and held in memory as uint8 — that array is the cache; the tf.data pipeline then draws
batches from it. Batch order is a pure function of (seed, global step), so a resumed run sees exactly the batches
the uninterrupted run would have seen.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.capture.store import is_store as is_capture_store
from edge.errors import UserError
from trainer.image_files import IMAGE_SUFFIXES, ImageRejected, load_training_image

log = logging.getLogger(__name__)


@dataclass
class DataReport:
    """What the scan found; written as `data_report.json` in the run folder."""

    data_dir: str
    class_names: list[str]
    class_counts: dict[str, int] = field(default_factory=dict)
    n_files: int = 0
    n_used: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    converted: list[dict[str, str]] = field(default_factory=list)  # {"path", "from"}

    def save(self, path: Path) -> None:
        from trainer.run_folder import write_json_atomic

        write_json_atomic(path, self.__dict__)


@dataclass
class TrainingData:
    images: np.ndarray  # (N, size, size, 3) uint8 RGB
    labels: np.ndarray  # (N,) int32 index into class_names
    class_names: list[str]
    report: DataReport


def _list_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def _store_files(store_dir: Path, classes: list[str] | None) -> dict[str, list[Path]]:
    """{class: image files} of a capture store, from its manifest (committed rows only)."""
    from edge.capture.store import CaptureStore

    with CaptureStore(store_dir, writable=False) as store:
        records = store.records()
        found: dict[str, list[Path]] = {}
        for r in sorted(records, key=lambda r: (r.class_name, r.id)):
            found.setdefault(r.class_name, []).append(store.image_path(r))
    found = _select_classes(found, classes, f"the capture store {store_dir}")
    if not any(found.values()):
        raise UserError(f"the capture store {store_dir} holds no captures yet")
    log.info("reading capture store %s (%s)", store_dir, ", ".join(f"{k} {len(v)}" for k, v in found.items()))
    return found


def _select_classes(found: dict[str, list[Path]], classes: list[str] | None, where: str) -> dict[str, list[Path]]:
    """Keep the asked-for classes, in the order asked; an unknown one is a UserError listing what `where` has."""
    if not classes:
        return found
    unknown = [c for c in classes if c not in found]
    if unknown:
        raise UserError(f"--classes {', '.join(unknown)} not found in {where}; "
                        f"available: {', '.join(sorted(found)) or 'none (it is empty)'}")
    return {c: found[c] for c in classes}


def discover(data_dir: Path, classes: list[str] | None) -> tuple[Path, dict[str, list[Path]]]:
    """Find the classes and their files. Returns (resolved folder, {class name: files})."""
    if not data_dir.exists():
        raise UserError(f"data folder {data_dir} does not exist")
    if not data_dir.is_dir():
        raise UserError(f"--data must be a folder of images or of class subfolders (or a capture store or its "
                        f".tar export); {data_dir} is a file")
    if is_capture_store(data_dir):
        return data_dir, _store_files(data_dir, classes)
    root = data_dir
    if (root / "train").is_dir() and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in _list_files(root)):
        log.info("using %s/train (the dataset's training split)", root)
        root = root / "train"
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        found = {p.name: _list_files(p) for p in subdirs}
        loose = [p for p in _list_files(root) if p.suffix.lower() in IMAGE_SUFFIXES]
        if loose:
            log.warning("%d images directly in %s are ignored (class subfolders are used)", len(loose), root)
    else:
        found = {root.name: _list_files(root)}
    found = _select_classes(found, classes, str(root))
    if not any(found.values()):
        raise UserError(f"no files in {root}: put images (JPEG, PNG, WebP) in it or in class subfolders")
    return root, found


def load_training_data(
    data_dir: str | Path,
    size_px: int,
    *,
    classes: list[str] | None = None,
    crop: str = "center",
    progress: bool = True,
) -> TrainingData:
    """Decode every usable image under `data_dir`; skip and report the rest before training starts.

    `data_dir` may also be a capture store (the kiosk's folder with manifest.sqlite) or its `.tar` export: the
    classes are the manifest's, and an archive is verified and unpacked into a temporary store first.
    """
    if Path(data_dir).is_file() and Path(data_dir).suffix == ".tar":
        import tempfile

        from edge.capture.archive import import_archive

        with tempfile.TemporaryDirectory(prefix="atelier-captures-") as tmp:
            import_archive(data_dir, Path(tmp) / "store", progress=progress, min_free_bytes=0)
            data = load_training_data(Path(tmp) / "store", size_px, classes=classes, crop=crop, progress=progress)
        data.report.data_dir = str(Path(data_dir).resolve())
        return data
    root, found = discover(Path(data_dir), classes)
    class_names = list(found)
    report = DataReport(data_dir=str(root.resolve()), class_names=class_names)
    images: list[np.ndarray] = []
    labels: list[int] = []
    jobs = [(label, path) for label, name in enumerate(class_names) for path in found[name]]
    report.n_files = len(jobs)
    for label, path in tqdm(jobs, desc="reading images", unit="img", disable=not progress, leave=False):
        try:
            loaded = load_training_image(path, size_px, crop)
        except ImageRejected as exc:
            report.skipped.append({"path": str(path), "reason": str(exc)})
            continue
        if loaded.converted_from:
            report.converted.append({"path": str(path), "from": loaded.converted_from})
        images.append(loaded.pixels)
        labels.append(label)
    for item in report.skipped:
        log.warning("skipped %s: %s", item["path"], item["reason"])
    if report.converted:
        log.info("converted %d images to RGB (e.g. %s from %s)", len(report.converted),
                 report.converted[0]["path"], report.converted[0]["from"])
    report.n_used = len(images)
    report.class_counts = {name: int(np.sum(np.asarray(labels) == i)) for i, name in enumerate(class_names)}
    if not images:
        raise UserError(f"none of the {report.n_files} files in {root} is a usable image "
                        f"(first problem: {report.skipped[0]['path']}: {report.skipped[0]['reason']})")
    log.info("using %d of %d files from %s (%s)", report.n_used, report.n_files, root,
             ", ".join(f"{k} {v}" for k, v in report.class_counts.items()))
    return TrainingData(np.stack(images), np.asarray(labels, dtype=np.int32), class_names, report)


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped: shapes stay static)."""
    return max(1, n_images // batch_size)


def make_dataset(data: TrainingData, batch_size: int, seed: int, start_step: int, end_step: int):
    """Batches for global steps [start_step, end_step): (images in [-1, 1], class ids).

    Epoch e's order is a stateless shuffle seeded by (seed, e); flips are seeded by (seed, step). Nothing depends
    on how many batches were drawn before, so resuming at any step repeats the uninterrupted run exactly.
    """
    import tensorflow as tf

    n = len(data.images)
    spe = steps_per_epoch(n, batch_size)
    images = tf.constant(data.images)
    labels = tf.constant(data.labels)

    def batch_for_step(step):
        epoch = step // spe
        index = step % spe
        keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        order = tf.argsort(keys)
        idx = order[index * batch_size:(index + 1) * batch_size]
        x = tf.gather(images, idx)
        flip = tf.random.stateless_uniform([batch_size], seed=tf.stack([tf.cast(seed, tf.int64) + 1, step])) < 0.5
        x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
        x = tf.cast(x, tf.float32) / 127.5 - 1.0
        return x, tf.gather(labels, idx)

    ds = tf.data.Dataset.range(start_step, end_step)
    ds = ds.map(batch_for_step, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return ds.prefetch(tf.data.AUTOTUNE)
