"""The garment feature network: a small CNN classifier whose pooled features stand in for Inception's.

No Inception weights can be downloaded here, so Atelier trains its own garment classifier on the training split of
clothing-small and ships it in `models/features/` (a `.keras` file of 2.5 MB and `card.json`, which records
the data, the command, the epochs and the validation accuracy). Its penultimate layer — 256 channels after global
average pooling — is the feature space of FCD, KID, precision/recall and the novelty check
(`trainer.feature_distances`).

Input: uint8 RGB pictures of any (square) size. They are resized *inside* the model to the network's size (64 px
for `models/features`, 128 px for `models/features-128`; bilinear, antialiased), so real photos and generated designs
go through one resize path (the clean-fid lesson: resizing differences alone move FID by several points).

Two networks ship. The 64 px one (`models/features`) is blind to what happens above 64 px: an 8 px grid pattern or
nearest-neighbour blockiness is averaged away by its input resize, and its training's random 2x downscale taught it
to ignore blur. The 128 px one (`models/features-128`) sees the model's own pixels: a stride-2 3x3 stem reads every
128 px pixel, then the same body as the 64 px network; it trains without the downscale augmentation.

Architecture (about 0.6 M parameters, 60 M MACs per picture at 64 px): a 3x3 conv at 64 px, a stride-2 conv to
32 px, then conv pairs at 32, 16 and 8 px with 2x2 max-pooling between them and a last conv to 256 channels at
4 px, each conv followed by BatchNorm and ReLU; global average pooling gives the 256-d features; dropout and a
dense softmax layer classify. Training uses flips, small translations, colour jitter and a random 2x downscale (so
32 px designs, upscaled to 64, look like something the network has seen), AdamW with a cosine schedule and label
smoothing.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.bundle import file_sha256
from edge.errors import UserError

log = logging.getLogger(__name__)

FEATURE_SIZE_PX = 64  # side the default network works at; inputs of any size are resized to it inside the model
FEATURE_SIZES_PX = (64, 128)  # sides a feature network can be trained at
FEATURE_LAYER = "features"  # name of the pooled penultimate layer
MODEL_FILE = "garment_features.keras"
CARD_FILE = "card.json"
FEATURES_ENV = "ATELIER_FEATURES"  # overrides the default feature-network folder
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "models" / "features"
DEFAULT_DIR_128 = Path(__file__).resolve().parent.parent / "models" / "features-128"  # the network that sees 128 px
# Class names of other datasets that mean a class the network knows (the procedural garments draw "trousers").
CLASS_ALIASES: dict[str, str] = {"trousers": "pants"}


@dataclass
class FeatureTrainConfig:
    """How the feature network is trained (recorded in card.json)."""

    epochs: int = 18  # passes over the training split (the shipped network: 18, about 15 min on 2 busy cores)
    batch_size: int = 64  # pictures per step
    lr: float = 2e-3  # peak AdamW learning rate (cosine decay to 0)
    weight_decay: float = 1e-4  # AdamW decoupled weight decay
    label_smoothing: float = 0.1  # cross-entropy label smoothing
    dropout: float = 0.3  # before the softmax layer
    seed: int = 0  # weights, data order and augmentation
    crop: str = "center"  # how photos are squared before resizing (as in training the GAN)
    size_px: int = FEATURE_SIZE_PX  # the side the network reads (64, or 128 with a stride-2 stem)
    downscale_share: float | None = None  # share of pictures blurred by a 2x down/up (None: 0.25 at 64 px, 0 at 128)

    def resolved_downscale_share(self) -> float:
        """The 64 px network learns to ignore blur (so 32 px designs look familiar); the 128 px one must see it."""
        if self.downscale_share is not None:
            return self.downscale_share
        return 0.25 if self.size_px == FEATURE_SIZE_PX else 0.0


def feature_dir() -> Path:
    """The folder of the feature network: `$ATELIER_FEATURES` when set, else the repository's models/features."""
    env = os.environ.get(FEATURES_ENV)
    return Path(env) if env else DEFAULT_DIR


def build_feature_classifier(n_classes: int, *, dropout: float = 0.3, size_px: int = FEATURE_SIZE_PX):
    """The garment classifier as a Keras functional model (input: float RGB 0..255, any size).

    At 128 px a stride-2 3x3 stem (16 channels) reads every pixel and hands 64 px maps to the 64 px body.
    """
    import keras
    from keras import layers

    def conv(x, filters: int, strides: int = 1):
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        return layers.ReLU()(x)

    inputs = keras.Input((None, None, 3), name="rgb")
    if size_px not in FEATURE_SIZES_PX:
        raise UserError(f"a feature network reads {' or '.join(map(str, FEATURE_SIZES_PX))} px, not {size_px}")
    x = layers.Resizing(size_px, size_px, interpolation="bilinear", antialias=True, name="resize")(inputs)
    x = layers.Rescaling(1.0 / 127.5, offset=-1.0)(x)
    if size_px == 128:
        x = conv(x, 16, strides=2)  # 128 -> 64 px: every input pixel reaches the features
    x = conv(x, 24)  # 64 px
    x = conv(x, 32, strides=2)  # 32 px
    x = conv(x, 32)
    x = layers.MaxPooling2D()(x)  # 16 px
    x = conv(x, 64)
    x = conv(x, 64)
    x = layers.MaxPooling2D()(x)  # 8 px
    x = conv(x, 128)
    x = conv(x, 128)
    x = layers.MaxPooling2D()(x)  # 4 px
    x = conv(x, 256)
    features = layers.GlobalAveragePooling2D(name=FEATURE_LAYER)(x)
    x = layers.Dropout(dropout)(features)
    outputs = layers.Dense(n_classes, activation="softmax", name="class_probs")(x)
    return keras.Model(inputs, outputs, name="garment_features")


def _augment_fn(seed: int, size: int = FEATURE_SIZE_PX, downscale_share: float = 0.25):
    """A tf.data map function: flip, translation, colour jitter and (for a share) a 2x downscale, per picture."""
    import tensorflow as tf

    def augment(image, label, index):
        s = tf.stack([tf.cast(seed, tf.int64), index])
        x = tf.cast(image, tf.float32)
        x = tf.image.stateless_random_flip_left_right(x, seed=s)
        # Translation up to 1/8 of the side: pad with edge pixels (the photo's backdrop), crop back.
        pad = size // 8
        x = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]], mode="SYMMETRIC")
        x = tf.image.stateless_random_crop(x, [size, size, 3], seed=s + 1)
        x = tf.image.stateless_random_brightness(x, 25.0, seed=s + 2)
        x = tf.image.stateless_random_contrast(x, 0.75, 1.25, seed=s + 3)
        x = tf.image.stateless_random_saturation(x, 0.7, 1.3, seed=s + 4)
        small = tf.image.resize(x, [size // 2, size // 2], antialias=True)
        small = tf.image.resize(small, [size, size])
        x = tf.where(tf.random.stateless_uniform([], seed=s + 5) < downscale_share, small, x)
        return tf.clip_by_value(x, 0.0, 255.0), label

    return augment


def _split_dirs(data_dir: Path) -> tuple[Path, Path]:
    train, validation = data_dir / "train", data_dir / "validation"
    if not (train.is_dir() and validation.is_dir()):
        raise UserError(f"{data_dir} needs train/ and validation/ class folders (the clothing-small layout), "
                        "so the network's accuracy can be measured on pictures it never saw")
    return train, validation


def train_feature_net(data_dir: str | Path, out_dir: str | Path, cfg: FeatureTrainConfig | None = None, *,
                      command: list[str] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the garment classifier on `data_dir/train`, measure it on `data_dir/validation`, save it.

    Args:
        data_dir: a dataset root with train/<class>/ and validation/<class>/ (clothing-small).
        out_dir: where `garment_features.keras` and `card.json` are written (replacing earlier ones).
        cfg: training settings (defaults: `FeatureTrainConfig()`).
        command: the command line, recorded in the card.
        progress: show Keras' progress bar.

    Returns:
        The card (also written as card.json): data, settings, validation accuracy, file hash.
    """
    import keras
    import tensorflow as tf

    from trainer.dataset import load_training_data

    cfg = cfg or FeatureTrainConfig()
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise UserError(f"--epochs and --batch-size must be at least 1 (got {cfg.epochs}, {cfg.batch_size})")
    if cfg.size_px not in FEATURE_SIZES_PX:
        raise UserError(f"--size must be {' or '.join(map(str, FEATURE_SIZES_PX))}, got {cfg.size_px}")
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    train_dir, val_dir = _split_dirs(data_dir)
    t0 = time.perf_counter()
    train = load_training_data(train_dir, cfg.size_px, crop=cfg.crop, progress=progress)
    val = load_training_data(val_dir, cfg.size_px, classes=train.class_names, crop=cfg.crop, progress=progress)
    n_classes = len(train.class_names)
    if n_classes < 2:
        raise UserError(f"{train_dir} has one class; the feature network needs at least two class folders")

    keras.utils.set_random_seed(cfg.seed)
    model = build_feature_classifier(n_classes, dropout=cfg.dropout, size_px=cfg.size_px)
    steps = cfg.epochs * (len(train.images) // cfg.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=max(1, steps))
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=cfg.weight_decay),
                  loss=keras.losses.CategoricalCrossentropy(label_smoothing=cfg.label_smoothing),
                  metrics=["accuracy"])
    onehot = np.eye(n_classes, dtype=np.float32)
    n = len(train.images)
    ds = tf.data.Dataset.from_tensor_slices((train.images, onehot[train.labels], np.arange(n, dtype=np.int64)))
    ds = ds.shuffle(n, seed=cfg.seed, reshuffle_each_iteration=True)
    ds = ds.map(_augment_fn(cfg.seed, cfg.size_px, cfg.resolved_downscale_share()),
                num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(cfg.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    val_ds = tf.data.Dataset.from_tensor_slices((val.images.astype(np.float32), onehot[val.labels]))
    val_ds = val_ds.batch(256)
    history = model.fit(ds, epochs=cfg.epochs, validation_data=val_ds, verbose=1 if progress else 2, shuffle=False)

    probs = model.predict(val.images.astype(np.float32), batch_size=256, verbose=0)
    predicted = probs.argmax(axis=1)
    per_class = {name: round(float(np.mean(predicted[val.labels == i] == i)), 4)
                 for i, name in enumerate(train.class_names) if np.any(val.labels == i)}
    accuracy = float(np.mean(predicted == val.labels))

    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / MODEL_FILE
    save_for_shipping(model, model_path, dropout=cfg.dropout, size_px=cfg.size_px)
    card = {
        "what": "garment classifier whose 256-d pooled penultimate layer is Atelier's feature space "
                "(FCD, KID, precision/recall, novelty)",
        "file": MODEL_FILE,
        "sha256": file_sha256(model_path),
        "bytes": model_path.stat().st_size,
        "params": int(model.count_params()),
        "input": f"uint8 RGB, any square size, resized inside the model to {cfg.size_px} px "
                 "(bilinear, antialiased)",
        "size_px": cfg.size_px,
        "feature_layer": FEATURE_LAYER,
        "feature_dim": int(model.get_layer(FEATURE_LAYER).output.shape[-1]),
        "class_names": train.class_names,
        "data": {
            "train_dir": str(train_dir),
            "validation_dir": str(val_dir),
            "n_train": len(train.images),
            "n_validation": len(val.images),
            "train_class_counts": train.report.class_counts,
            "validation_class_counts": val.report.class_counts,
            "loaded_at_px": cfg.size_px,
            "crop": cfg.crop,
        },
        "training": asdict(cfg),
        "final_train_accuracy": round(float(history.history["accuracy"][-1]), 4),
        "val_accuracy": round(accuracy, 4),
        "val_accuracy_per_class": per_class,
        "wall_s": round(time.perf_counter() - t0, 1),
        "command": command or [],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "created_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    log.info("feature network: validation accuracy %.3f on %d pictures -> %s", accuracy, len(val.images),
             model_path)
    return card


def save_for_shipping(model, path: Path, *, dropout: float = 0.3, size_px: int = FEATURE_SIZE_PX) -> None:
    """Save the classifier's weights in an uncompiled copy: no optimizer state (a third of the size)."""
    n_classes = int(model.outputs[0].shape[-1])
    clean = build_feature_classifier(n_classes, dropout=dropout, size_px=size_px)
    clean.set_weights(model.get_weights())
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    clean.save(tmp)
    os.replace(tmp, path)


class GarmentFeatures:
    """The loaded feature network: features and class probabilities of uint8 RGB pictures.

    Args:
        model: the trained classifier (see `build_feature_classifier`).
        card: its card.json.
    """

    def __init__(self, model, card: dict[str, Any]) -> None:
        import keras

        self.card = card
        self.class_names: list[str] = list(card["class_names"])
        self._model = keras.Model(model.input, [model.get_layer(FEATURE_LAYER).output, model.outputs[0]])

    @property
    def feature_model(self):
        """The Keras model RGB 0..255 (N, H, W, 3) -> features (N, D), differentiable (for training losses)."""
        import keras

        return keras.Model(self._model.input, self._model.outputs[0])

    @property
    def feature_dim(self) -> int:
        """Length of a feature vector."""
        return int(self._model.outputs[0].shape[-1])

    def class_index(self, name: str) -> int | None:
        """The network's index for a class name (aliases such as trousers -> pants), or None if it lacks it."""
        name = CLASS_ALIASES.get(name, name)
        return self.class_names.index(name) if name in self.class_names else None

    def __call__(self, images: np.ndarray, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """Features (N, D) float64 and class probabilities (N, C) float64 of uint8 pictures (N, H, W, 3)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"expected uint8 pictures (N, H, W, 3), got {images.dtype} {images.shape}")
        feats, probs = [], []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size].astype(np.float32)
            f, p = self._model(chunk, training=False)
            feats.append(np.asarray(f, dtype=np.float64))
            probs.append(np.asarray(p, dtype=np.float64))
        if not feats:
            return np.zeros((0, self.feature_dim)), np.zeros((0, len(self.class_names)))
        return np.concatenate(feats), np.concatenate(probs)


def load_feature_net(path: str | Path | None = None) -> GarmentFeatures:
    """Load the shipped feature network (or the one in `path`), checking it against its card.

    Args:
        path: a folder holding garment_features.keras and card.json; default `feature_dir()`.

    Raises:
        UserError: the folder, the model or the card is missing or does not match.
    """
    import keras

    folder = Path(path) if path is not None else feature_dir()
    model_path, card_path = folder / MODEL_FILE, folder / CARD_FILE
    hint = "train one with `atelier features train --data DATASET --out DIR` and pass --features DIR"
    if not model_path.is_file() or not card_path.is_file():
        raise UserError(f"no feature network in {folder} (need {MODEL_FILE} and {CARD_FILE}): {hint}")
    try:
        card = json.loads(card_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{card_path} is not valid JSON, the file is damaged ({exc}): {hint}") from None
    if not isinstance(card, dict) or not isinstance(card.get("class_names"), list):
        raise UserError(f"{card_path} has no class_names list: {hint}")
    if card.get("sha256") and file_sha256(model_path) != card["sha256"]:
        raise UserError(f"{model_path} does not match the sha256 in {card_path}: the file is damaged; {hint}")
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as exc:  # Keras raises many types for a damaged archive
        raise UserError(f"cannot load {model_path}: {exc}") from exc
    return GarmentFeatures(model, card)
