"""Training data: scan a folder, decode every usable image once, report the rest, feed batches through tf.data.

Layouts: a folder of class subfolders (clothing-small: `train/<class>/*.jpg`), a flat folder of images (one class
named after the folder), or a dataset root holding `train/`. Every image is decoded, squared and resized once
(`trainer.image_files`) and held in memory as uint8 — that array is the cache; the tf.data pipeline then draws
batches from it. Batch order is a pure function of (seed, global step), so a resumed run sees exactly the batches
the uninterrupted run would have seen.

Batch order is also independent of how many workers feed it. Each file belongs to one *column* of the global
batch (a fixed seeded deal: file -> row position, `batch_columns`); at step s, row c of the global batch is the s-th
file of column c in that epoch's stateless shuffle. A worker that feeds rows [a, b) of every global batch therefore
only ever needs the files of columns [a, b): it decodes just that shard (`load_training_data(select=...)`), and N
workers together draw exactly the batches one worker draws alone.
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
    # Multi-worker runs: {"worker", "n_used", "n_skipped"} per worker (skipped/converted list the chief's shard).
    workers: list[dict[str, int]] = field(default_factory=list)
    files_digest: str = ""  # SHA-256 of the full scan's (class, name, size) list: which photos, wherever they sit

    def save(self, path: Path) -> None:
        from trainer.run_folder import write_json_atomic

        write_json_atomic(path, self.__dict__)


@dataclass
class TrainingData:
    images: np.ndarray  # (N, size, size, 3) uint8 RGB
    labels: np.ndarray  # (N,) int32 index into class_names
    class_names: list[str]
    report: DataReport
    file_ids: np.ndarray | None = None  # (N,) each image's index in the full scan (None: 0..N-1, all files)
    n_files: int = 0  # files in the full scan (0: N)
    files_digest: str = ""  # SHA-256 of the scan's (class, name, size) list: the same data on every worker

    def ids(self) -> np.ndarray:
        return np.arange(len(self.images)) if self.file_ids is None else self.file_ids

    def total_files(self) -> int:
        return self.n_files or len(self.images)


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
    select=None,
) -> TrainingData:
    """Decode every usable image under `data_dir`; skip and report the rest before training starts.

    `data_dir` may also be a capture store (the kiosk's folder with manifest.sqlite) or its `.tar` export: the
    classes are the manifest's, and an archive is verified and unpacked into a temporary store first.
    `select(n_files)` (a boolean mask over the scan) picks the files to decode: a worker's shard.
    """
    if Path(data_dir).is_file() and Path(data_dir).suffix == ".tar":
        import tempfile

        from edge.capture.archive import import_archive

        with tempfile.TemporaryDirectory(prefix="atelier-captures-") as tmp:
            import_archive(data_dir, Path(tmp) / "store", progress=progress, min_free_bytes=0)
            data = load_training_data(Path(tmp) / "store", size_px, classes=classes, crop=crop, progress=progress,
                                      select=select)
        data.report.data_dir = str(Path(data_dir).resolve())
        return data
    root, found = discover(Path(data_dir), classes)
    class_names = list(found)
    report = DataReport(data_dir=str(root.resolve()), class_names=class_names)
    images: list[np.ndarray] = []
    labels: list[int] = []
    jobs = [(label, path) for label, name in enumerate(class_names) for path in found[name]]
    report.n_files = len(jobs)
    digest = report.files_digest = _files_digest(class_names, jobs)
    wanted = np.ones(len(jobs), bool) if select is None else np.asarray(select(len(jobs)), bool)
    file_ids: list[int] = []
    for i, (label, path) in enumerate(tqdm(jobs, desc="reading images", unit="img", disable=not progress,
                                           leave=False)):
        if not wanted[i]:
            continue
        try:
            loaded = load_training_image(path, size_px, crop)
        except ImageRejected as exc:
            report.skipped.append({"path": str(path), "reason": str(exc)})
            continue
        if loaded.converted_from:
            report.converted.append({"path": str(path), "from": loaded.converted_from})
        images.append(loaded.pixels)
        labels.append(label)
        file_ids.append(i)
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
    return TrainingData(np.stack(images), np.asarray(labels, dtype=np.int32), class_names, report,
                        np.asarray(file_ids, np.int64), len(jobs), digest)


def _files_digest(class_names: list[str], jobs: list[tuple[int, Path]]) -> str:
    import hashlib

    h = hashlib.sha256()
    for label, path in jobs:
        size = path.stat().st_size if path.is_file() else -1
        h.update(f"{class_names[label]}/{path.name}\t{size}\n".encode())
    return h.hexdigest()


def steps_per_epoch(n_images: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped: shapes stay static)."""
    return max(1, n_images // batch_size)


def batch_columns(n_files: int, batch_size: int, seed: int) -> np.ndarray:
    """The global-batch row (column) of each file of the scan: a seeded deal, the same for any worker count."""
    perm = np.random.default_rng([seed, 20_251]).permutation(n_files)
    columns = np.empty(n_files, np.int64)
    columns[perm] = np.arange(n_files) % batch_size
    return columns


def shard_mask(n_files: int, batch_size: int, seed: int, first_row: int, rows: int) -> np.ndarray:
    """The files a worker feeding global-batch rows [first_row, first_row + rows) needs."""
    columns = batch_columns(n_files, batch_size, seed)
    return (columns >= first_row) & (columns < first_row + rows)


def column_steps(data: TrainingData, batch_size: int, seed: int, first_row: int = 0, rows: int | None = None) -> int:
    """Full global batches per epoch that the local images allow: the fewest usable files in one of its columns."""
    rows = batch_size if rows is None else rows
    columns = batch_columns(data.total_files(), batch_size, seed)[data.ids()]
    counts = np.bincount(columns - first_row, minlength=rows)[:rows]
    return int(counts.min())


def make_dataset(data: TrainingData, batch_size: int, seed: int, start_step: int, end_step: int, *,
                 spe: int | None = None, first_row: int = 0, rows: int | None = None, per_replica: int | None = None):
    """Batches for global steps [start_step, end_step): (images in [-1, 1], class ids).

    Epoch e shuffles every column by stateless keys seeded by (seed, e) over the whole scan; flips are seeded by
    (seed, step) over the whole global batch. Nothing depends on how many batches were drawn before, nor on how
    many workers there are, so resuming at any step, or splitting the batch, repeats the single run exactly.

    Args:
        spe: steps per epoch (agreed by all workers); default: what the local images allow.
        first_row, rows: the rows of the global batch this worker feeds (default: all of them).
        per_replica: split each step's rows into elements of this many (one per local replica, in order).
    """
    import tensorflow as tf

    rows = batch_size if rows is None else rows
    spe = column_steps(data, batch_size, seed, first_row, rows) if spe is None else spe
    if spe < 1:
        raise UserError(f"a column of the global batch has no usable image: {data.total_files()} files are too "
                        f"few for a batch of {batch_size}")
    n_files = data.total_files()
    ids = data.ids()
    columns = batch_columns(n_files, batch_size, seed)[ids] - first_row
    starts = np.concatenate([[0], np.cumsum(np.bincount(columns, minlength=rows))[:-1]])  # each column's segment
    images = tf.constant(data.images)
    labels = tf.constant(data.labels)
    file_ids = tf.constant(ids)
    column_base = tf.constant(columns.astype(np.float64))
    column_starts = tf.constant(starts.astype(np.int64))

    def batch_for_step(step):
        epoch = step // spe
        index = step % spe
        keys = tf.random.stateless_uniform([n_files], seed=tf.stack([tf.cast(seed, tf.int64), epoch]))
        # Sorted by (column, key): column c's files are a contiguous segment, in this epoch's order.
        order = tf.argsort(column_base + tf.cast(tf.gather(keys, file_ids), tf.float64), stable=True)
        idx = tf.gather(order, column_starts + index)
        x = tf.gather(images, idx)
        flip = tf.random.stateless_uniform([batch_size], seed=tf.stack([tf.cast(seed, tf.int64) + 1, step])) < 0.5
        flip = flip[first_row:first_row + rows]
        x = tf.where(flip[:, None, None, None], tf.reverse(x, axis=[2]), x)
        x = tf.cast(x, tf.float32) / 127.5 - 1.0
        return x, tf.gather(labels, idx)

    ds = tf.data.Dataset.range(start_step, end_step)
    ds = ds.map(batch_for_step, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if per_replica is not None and per_replica != rows:
        ds = ds.unbatch().batch(per_replica, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)
