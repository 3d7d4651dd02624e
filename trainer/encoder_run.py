"""`atelier train-encoder` in one call: generator -> training photos -> trained encoder -> int8 into the bundle.

    SOURCE = a bundle folder: the float generator is rebuilt from its int8 model (trainer.generator_source) and
             the encoder lands in that bundle (or in --bundle);
    SOURCE = a run folder:    its generator.keras is used, the float encoder is saved as RUN_DIR/encoder.keras,
             and with --bundle (a bundle exported from that run; checked by comparing designs) it is exported.

Training photos are the generator's own training photos (the `train/` split of its data folder, its classes);
the `validation/` split is never used here, so `atelier train-encoder` results can be measured on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import MANIFEST, load_bundle
from edge.errors import UserError
from trainer.encoder import KERAS_FILE
from trainer.encoder_train import EncoderTrainConfig, save_encoder, train_encoder
from trainer.generator_source import check_generator_matches, load_generator_source
from trainer.portable_paths import OUTSIDE, REPO_ROOT, portable_if_absolute, portable_path

log = logging.getLogger(__name__)

N_PARITY = 48  # pictures in the parity report: half real photos, half generated


@dataclass
class EncoderRunResult:
    bundle_dir: Path | None  # where the int8 encoder was written (None: a run folder without --bundle)
    keras_path: Path | None  # where the float encoder was saved
    entry: dict[str, Any] | None  # the manifest's encoder entry
    report: dict[str, Any]  # the training report


def _data_dir(config: dict[str, Any], data: str | Path | None) -> Path:
    from trainer.eval_photos import split_dirs

    if data is None:
        # A bundle records its data folder relative to the repository, or outside it by name and hash only.
        recorded = str(config.get("data_dir") or "")
        found = None if not recorded or recorded.startswith(OUTSIDE) else REPO_ROOT / recorded  # absolute stays
        if found is None or not found.is_dir():
            raise UserError(f"the generator's training photos ({recorded or 'not recorded'}) are not here: "
                            "pass --data with the folder it was trained on")
        data = found
    train_dir, _ = split_dirs(Path(data))
    if not train_dir.is_dir():
        raise UserError(f"--data {data} is not a folder of photos")
    return train_dir


def _camera_pictures(source, n: int, seed: int) -> np.ndarray:
    """n generated designs through the training augmentation, float in [-1, 1] (calibration and parity)."""
    import tensorflow as tf

    from edge.designs import sample_prior
    from trainer.encoder_augment import camera_like

    z = sample_prior(n, source.z_dim, source.z_distribution, seed)
    feed: dict[str, np.ndarray] = {"z": z}
    if source.conditional:
        feed["class_onehot"] = np.eye(len(source.class_names), dtype=np.float32)[np.arange(n) % len(source.class_names)]
    images = source.model(feed, training=False)
    return np.asarray(camera_like(images, tf.constant([seed, 99], tf.int64)), np.float32)


def run_train_encoder(source_dir: str | Path, *, bundle_dir: str | Path | None = None,
                      data: str | Path | None = None, cfg: EncoderTrainConfig | None = None,
                      command: list[str] | None = None, force: bool = False, progress: bool = True,
                      features: str | Path | None = None) -> EncoderRunResult:
    """Train an encoder for the generator in `source_dir` and export it (see the module docstring)."""
    from trainer.dataset import load_training_data
    from trainer.encoder_export import export_encoder
    from trainer.features import load_feature_net

    cfg = cfg or EncoderTrainConfig()
    cfg.validate()
    source = load_generator_source(source_dir)
    target = Path(bundle_dir) if bundle_dir is not None else (source.path if source.kind == "bundle" else None)
    if target is not None:
        if not (target / MANIFEST).is_file():
            raise UserError(f"--bundle {target} is not a bundle folder (no {MANIFEST})")
        if source.kind == "run":
            check_generator_matches(source, load_bundle(target))
    train_dir = _data_dir(source.config, data)
    photos = load_training_data(train_dir, source.size_px, classes=list(source.config.get("class_names") or []) or None,
                                crop=str(source.config.get("crop", "center")), progress=progress)
    labels = None
    if source.conditional:
        names = list(source.class_names or [])
        missing = [c for c in photos.class_names if c not in names]
        if missing:
            raise UserError(f"--data has classes {missing} this generator does not draw")
        labels = np.asarray([names.index(photos.class_names[i]) for i in photos.labels], np.int32)
    feature_net = load_feature_net(features)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(photos.images))
    held = order[: N_PARITY // 2]  # parity pictures, kept out of training and calibration
    train_idx = order[N_PARITY // 2:] if len(order) > N_PARITY else order
    trained = train_encoder(source, photos.images[train_idx], None if labels is None else labels[train_idx], cfg,
                            features_model=feature_net.feature_model, progress=progress)
    # The bundle travels: no machine paths in its manifest (trainer.portable_paths, as the exporter does).
    generator = {**source.describe(), "path": portable_path(source.path)}
    report = {**trained.report(), "generator": generator, "data": {"dir": portable_path(train_dir),
              "n_images": len(train_idx), "classes": photos.class_names},
              "command": [portable_if_absolute(str(c)) for c in command or []]}
    keras_path = None
    if source.kind == "run":
        keras_path = source.path / KERAS_FILE
        save_encoder(trained, keras_path)
    if target is None:
        log.info("saved the float encoder as %s; pass --bundle to export it into a bundle", keras_path)
        return EncoderRunResult(None, keras_path, None, report)
    real = photos.images.astype(np.float32) / 127.5 - 1.0
    calibration = np.concatenate([real[train_idx[:100]], _camera_pictures(source, 100, cfg.seed + 1)])
    parity = np.concatenate([real[held], _camera_pictures(source, N_PARITY // 2, cfg.seed + 2)])
    entry = export_encoder(trained.model, trained.spec, target, calibration, parity, report, force=force)
    return EncoderRunResult(target, keras_path, entry, report)
